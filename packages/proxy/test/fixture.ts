import { writeFile } from "node:fs/promises";
import { connect as netConnect, type Socket } from "node:net";
import { join } from "node:path";
import { Signer } from "@aws-sdk/rds-signer";
import { createCertificateAuthority, issueLocalhostCertificate, type CertificateAuthority, type PemKeyPair } from "@rdsd/certs";
import { describeCredentialError, IamTokenCache, staticCredentialProvider } from "@rdsd/iam";
import type { Duplex } from "node:stream";
import { DirectDialer, iamAuth, TargetProxy, type Dialer, type ProxyLogger, type TargetProxyOptions, type UpstreamAuth } from "@rdsd/proxy";
import { makeRdsLikeTls, startPostgres, tempDir, type PostgresServer, type RdsLikeTls, type TempDir } from "@rdsd/testkit";

export const RDS_HOST = "orders-dev.abc123xyz.eu-west-2.rds.amazonaws.com";
export const RDS_PORT = 5432;
export const REGION = "eu-west-2";
/** Obviously fake keys: the tests sign real SigV4 tokens with them, offline. */
export const TEST_CREDENTIALS = { accessKeyId: "AKIDTESTPROXY0000001", secretAccessKey: "proxy-test-secret-not-a-real-key-000000" };

/** A real PostgreSQL with an RDS-shaped certificate, a local CA for client TLS, and an IAM token cache. */
export interface ProxyWorld {
  pg: PostgresServer;
  rds: RdsLikeTls;
  localCa: CertificateAuthority;
  localCaPath: string;
  localCert: PemKeyPair;
  tokens: IamTokenCache;
  dir: TempDir;
  /** The token an independent signer makes for (RDS_HOST, 5432, user, REGION) at the current (frozen) time. */
  expectedToken(user: string, overrides?: { host?: string; port?: number; region?: string }): Promise<string>;
  iam(user: string): UpstreamAuth;
  startProxy(options: Partial<TargetProxyOptions> & { user: string; auth: UpstreamAuth }): Promise<RunningProxy>;
  close(): Promise<void>;
}

export interface RunningProxy {
  proxy: TargetProxy;
  port: number;
  stop(): Promise<void>;
}

/**
 * Roles: iam_user (pg_hba `password`, like RDS IAM: the server asks for cleartext), scram_user, md5_user,
 * clear_user; database orders owned by iam_user. Plain TCP is refused by pg_hba: TLS only, as on RDS.
 * `hba`: a test's own pg_hba lines, placed first (its roles are the test's to create).
 */
export async function startProxyWorld(options: { hba?: string[] } = {}): Promise<ProxyWorld> {
  const rds = await makeRdsLikeTls(RDS_HOST);
  const pg = await startPostgres({
    tls: { certPem: rds.certPem, keyPem: rds.keyPem },
    hba: [
      ...(options.hba ?? []),
      "hostssl all iam_user 127.0.0.1/32 password",
      "hostssl all iam_other 127.0.0.1/32 password",
      "hostssl all scram_user 127.0.0.1/32 scram-sha-256",
      "hostssl all md5_user 127.0.0.1/32 md5",
      "hostssl all clear_user 127.0.0.1/32 password",
      "hostnossl all all 127.0.0.1/32 reject",
    ],
    settings: { log_connections: "on" },
  });
  await pg.admin("CREATE ROLE iam_user LOGIN");
  await pg.admin("CREATE ROLE iam_other LOGIN");
  await pg.admin("CREATE DATABASE orders OWNER iam_user");
  await pg.admin("CREATE ROLE scram_user LOGIN PASSWORD 'scram-secret'");
  await pg.admin("SET password_encryption = 'md5'; CREATE ROLE md5_user LOGIN PASSWORD 'md5-secret'");
  await pg.admin("CREATE ROLE clear_user LOGIN PASSWORD 'clear-secret'");

  const localCa = await createCertificateAuthority({ commonName: "rdsd test local CA" });
  const localCert = await issueLocalhostCertificate(localCa);
  const dir = await tempDir("rdsd-proxy-test-");
  const localCaPath = join(dir.path, "local-ca.pem");
  await writeFile(localCaPath, localCa.certPem);

  const tokens = new IamTokenCache({ credentials: staticCredentialProvider(TEST_CREDENTIALS) });
  const running = new Set<RunningProxy>();

  return {
    pg,
    rds,
    localCa,
    localCaPath,
    localCert,
    tokens,
    dir,
    async expectedToken(user, overrides = {}) {
      const signer = new Signer({
        hostname: overrides.host ?? RDS_HOST,
        port: overrides.port ?? RDS_PORT,
        username: user,
        region: overrides.region ?? REGION,
        credentials: TEST_CREDENTIALS,
      });
      return signer.getAuthToken();
    },
    iam(user) {
      return iamAuth(tokens, { host: RDS_HOST, port: RDS_PORT, user, region: REGION }, (err) => describeCredentialError(err));
    },
    async startProxy(options) {
      const { user, auth, ...rest } = options;
      const proxy = new TargetProxy({
        name: "orders-dev",
        listen: [{ host: "127.0.0.1", port: 0 }],
        upstream: { host: RDS_HOST, port: RDS_PORT, user, ca: rds.caPem, auth },
        dialer: new DirectDialer("127.0.0.1", pg.port),
        clientTls: localCert,
        ...rest,
      });
      await proxy.start();
      const entry: RunningProxy = {
        proxy,
        port: proxy.addresses()[0]!.port,
        stop: async () => {
          running.delete(entry);
          await proxy.stop(0);
        },
      };
      running.add(entry);
      return entry;
    },
    async close() {
      await Promise.all([...running].map((r) => r.stop()));
      await pg.stop();
      await Promise.all([dir.cleanup(), rds.cleanup()]);
    },
  };
}

/**
 * A real direct connection to the test database that keeps every stream it made, as an SSM tunnel's dialer would
 * hand them out: tests count the upstream connections the proxy opened, and drop one to play a tunnel failure.
 */
export class RecordingDialer implements Dialer {
  readonly carrier = "the SSM tunnel";
  readonly streams: Duplex[] = [];
  /** dial() calls, counted when made (a stream is recorded only once connected). */
  dials = 0;
  private readonly inner: Dialer;
  /** What singleUse() answers: true plays a tunnel whose every stream costs a session (an old SSM agent). */
  singleUseTunnel = false;

  constructor(port: number) {
    this.inner = new DirectDialer("127.0.0.1", port);
  }

  describe(): string {
    return "SSM (test) via i-0test";
  }

  /** Each dial's stream, in the order the dials were made (not the order they connected). */
  readonly dialed: Array<Promise<Duplex>> = [];

  dial(signal: AbortSignal): Promise<Duplex> {
    this.dials++;
    const stream = this.inner.dial(signal).then((connected) => {
      this.streams.push(connected);
      return connected;
    });
    this.dialed.push(stream);
    return stream;
  }

  singleUse(): boolean {
    return this.singleUseTunnel;
  }

  /** Streams not closed yet. */
  get open(): number {
    return this.streams.filter((s) => !s.destroyed).length;
  }
}

/** Opens a raw TCP connection to a local port. */
export function rawConnect(port: number, host = "127.0.0.1"): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = netConnect({ host, port }, () => resolve(s));
    s.once("error", reject);
  });
}

/** Collects everything a socket sends until it closes. */
export function readUntilClose(socket: Socket | import("node:tls").TLSSocket): Promise<Buffer> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    socket.on("data", (c: Buffer) => chunks.push(c));
    socket.on("error", () => {});
    socket.once("close", () => resolve(Buffer.concat(chunks)));
  });
}

export interface LogEntry {
  level: "debug" | "info" | "warn" | "error";
  message: string;
  fields: Record<string, unknown>;
}

/** A ProxyLogger that keeps what the proxy says, so tests can wait for an event the proxy only logs. */
export class RecordingLogger implements ProxyLogger {
  readonly entries: LogEntry[] = [];
  private readonly waiters = new Set<() => void>();

  debug(message: string, fields: Record<string, unknown> = {}): void {
    this.record({ level: "debug", message, fields });
  }
  info(message: string, fields: Record<string, unknown> = {}): void {
    this.record({ level: "info", message, fields });
  }
  warn(message: string, fields: Record<string, unknown> = {}): void {
    this.record({ level: "warn", message, fields });
  }
  error(message: string, fields: Record<string, unknown> = {}): void {
    this.record({ level: "error", message, fields });
  }

  /** Entries with this message. */
  named(message: string): LogEntry[] {
    return this.entries.filter((e) => e.message === message);
  }

  /** How many entries there are so far: pass it to waitFor as `since` to wait only for later ones. */
  mark(): number {
    return this.entries.length;
  }

  /**
   * Resolves with the first entry (already logged or to come; from entry number `since` on) with this message
   * whose fields match (equal, or match a RegExp).
   */
  waitFor(message: string, fields: Record<string, unknown> = {}, timeoutMs = 10_000, since = 0): Promise<LogEntry> {
    const matches = (actual: unknown, expected: unknown) => (expected instanceof RegExp ? expected.test(String(actual)) : actual === expected);
    const find = () => this.entries.slice(since).find((e) => e.message === message && Object.entries(fields).every(([k, v]) => matches(e.fields[k], v)));
    return new Promise((resolve, reject) => {
      const check = () => {
        const found = find();
        if (!found) return;
        clearTimeout(timer);
        this.waiters.delete(check);
        resolve(found);
      };
      const timer = setTimeout(() => {
        this.waiters.delete(check);
        reject(new Error(`the proxy did not log "${message}" ${JSON.stringify(fields)} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiters.add(check);
      check();
    });
  }

  private record(entry: LogEntry): void {
    this.entries.push(entry);
    for (const waiter of [...this.waiters]) waiter();
  }
}

/** Resolves once the proxy has no client connection open (it emits "connection-closed" for each). */
export function untilIdle(proxy: TargetProxy, timeoutMs = 10_000): Promise<void> {
  return new Promise((resolve, reject) => {
    const check = () => {
      if (proxy.stats().connections !== 0) return;
      clearTimeout(timer);
      proxy.off("connection-closed", check);
      resolve();
    };
    const timer = setTimeout(() => {
      proxy.off("connection-closed", check);
      reject(new Error(`the proxy still has ${proxy.stats().connections} client connection(s) after ${timeoutMs} ms`));
    }, timeoutMs);
    proxy.on("connection-closed", check);
    check();
  });
}
