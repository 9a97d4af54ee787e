import { randomBytes } from "node:crypto";
import { chmod, chown, mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { createCertificateAuthority } from "@rdsd/certs";
import { freePort, runCommand, startPostgres, type PostgresServer } from "@rdsd/testkit";
import { PGBOUNCER_BIN } from "./packages.js";
import { sampleProcess, startProcess, waitForOutput, type ProcessSample, type RunningProcess } from "./proc.js";
import { RDSD_BIN } from "./paths.js";

/** An RDS-shaped endpoint name: rdsd verifies the upstream certificate against it. */
export const RDS_HOST = "bench-db.abc123xyz.eu-west-2.rds.amazonaws.com";
export const BENCH_USER = "bench";
export const BENCH_DATABASE = "bench";
/** Rows of about 1000 bytes each for the bulk COPY (about 1 GB for 1,000,000 rows). */
export const BULK_ROW_TEXT_BYTES = 990;

export interface OsUser {
  uid: number;
  gid: number;
}

export async function postgresOsUser(): Promise<OsUser | undefined> {
  if (process.getuid?.() !== 0) return undefined;
  const { stdout } = await runCommand("getent", ["passwd", "postgres"]);
  const fields = stdout.trim().split(":");
  return { uid: Number(fields[2]), gid: Number(fields[3]) };
}

/** The RDS global bundle (global-bundle.pem) holds about this many CA certificates. */
const RDS_BUNDLE_CERTIFICATES = 118;
const SYSTEM_CA_FILE = "/etc/ssl/certs/ca-certificates.crt";

export interface BenchTls {
  /** The test CA, padded with other CA certificates to the size of the RDS bundle (what rdsd really loads). */
  caPath: string;
  /** How many certificates caPath holds. */
  caCertificates: number;
  certPem: string;
  keyPem: string;
}

/**
 * A test CA and a server certificate for the RDS-shaped name and for `localhost`: rdsd verifies the former
 * (as against RDS), pgbouncer the latter (it dials by name and cannot be told a different name to verify).
 */
export async function makeBenchTls(dir: string): Promise<BenchTls> {
  const ca = await createCertificateAuthority({ commonName: "rdsd bench RDS-like CA" });
  const server = await ca.issueServerCertificate({ dnsNames: [RDS_HOST, "localhost"] });
  const filler = await bundleFiller(RDS_BUNDLE_CERTIFICATES - 1);
  const caPath = join(dir, "rds-ca.pem");
  await writeFile(caPath, [ca.certPem.trim(), ...filler].join("\n") + "\n", { mode: 0o644 });
  return { caPath, caCertificates: 1 + filler.length, certPem: server.certPem, keyPem: server.keyPem };
}

/** Up to `count` CA certificates from the system store: stand-ins for the rest of the RDS bundle. */
async function bundleFiller(count: number): Promise<string[]> {
  let text = "";
  try {
    text = await readFile(SYSTEM_CA_FILE, "utf8");
  } catch {
    return []; // no system store: the bench runs with the test CA alone, and says so
  }
  return (text.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? []).slice(0, count);
}

export interface BenchDatabase {
  server: PostgresServer;
  password: string;
  /** Runs psql/pgbench as the bench user over the unix socket (trust), for setup. */
  psqlAdmin(sql: string): Promise<void>;
}

/**
 * PostgreSQL with TLS on, and the bench user allowed only over TLS with a cleartext password: the shape of an
 * RDS IAM login (the token travels as a cleartext password inside verified TLS).
 */
export async function startBenchDatabase(tls: BenchTls, scale: number, maxConnections: number): Promise<BenchDatabase> {
  const server = await startPostgres({
    tls: { certPem: tls.certPem, keyPem: tls.keyPem },
    hba: [`hostssl all ${BENCH_USER} 127.0.0.1/32 password`, `hostnossl all ${BENCH_USER} 127.0.0.1/32 reject`],
    maxConnections,
    settings: { shared_buffers: "256MB", max_wal_size: "4GB", checkpoint_timeout: "30min" },
  });
  try {
    const password = randomBytes(12).toString("hex");
    await server.admin(`CREATE ROLE ${BENCH_USER} LOGIN PASSWORD '${password}'`);
    await server.admin(`CREATE DATABASE ${BENCH_DATABASE} OWNER ${BENCH_USER}`);
    const env = { ...process.env, PGHOST: server.socketDir, PGPORT: String(server.port), PGUSER: BENCH_USER, PGDATABASE: BENCH_DATABASE };
    const psqlAdmin = async (sql: string) => {
      const r = await runCommand(join(server.binDir, "psql"), ["-X", "-q", "-v", "ON_ERROR_STOP=1", "-c", sql], { env, timeoutMs: 600_000 });
      if (r.code !== 0) throw new Error(`psql failed: ${r.stderr}`);
    };
    const init = await runCommand(join(server.binDir, "pgbench"), ["-i", "-q", "-s", String(scale)], { env, timeoutMs: 600_000 });
    if (init.code !== 0) throw new Error(`pgbench -i failed:\n${init.stderr}`);
    await psqlAdmin("CREATE UNLOGGED TABLE bulk_in (g int, t text)");
    await psqlAdmin("VACUUM ANALYZE");
    return { server, password, psqlAdmin };
  } catch (err) {
    await server.stop();
    throw err;
  }
}

export interface Pgbouncer {
  port: number;
  process: RunningProcess;
  version: string;
  stop(): Promise<void>;
}

/**
 * pgbouncer in session mode on a free loopback port: clients without TLS and trusted (like rdsd's local side),
 * the server over TLS with verify-full against the test CA.
 */
export async function startPgbouncer(dir: string, db: BenchDatabase, tls: BenchTls, osUser: OsUser | undefined): Promise<Pgbouncer> {
  const version = (await runCommand(PGBOUNCER_BIN, ["--version"])).stdout.split("\n")[0]?.trim() ?? "pgbouncer";
  const authFile = join(dir, "pgbouncer-users.txt");
  await writeFile(authFile, `"${BENCH_USER}" ""\n`, { mode: 0o644 });
  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    const configPath = join(dir, "pgbouncer.ini");
    await writeFile(
      configPath,
      [
        "[databases]",
        `${BENCH_DATABASE} = host=localhost port=${db.server.port} dbname=${BENCH_DATABASE} user=${BENCH_USER} password=${db.password}`,
        "[pgbouncer]",
        "listen_addr = 127.0.0.1",
        `listen_port = ${port}`,
        "unix_socket_dir =",
        "auth_type = trust",
        `auth_file = ${authFile}`,
        "pool_mode = session",
        "max_client_conn = 2000",
        "default_pool_size = 100",
        "server_tls_sslmode = verify-full",
        `server_tls_ca_file = ${tls.caPath}`,
        "log_connections = 0",
        "log_disconnections = 0",
        "log_pooler_errors = 1",
        "",
      ].join("\n"),
      { mode: 0o600 },
    );
    if (osUser) await chown(configPath, osUser.uid, osUser.gid);
    await chmod(dir, 0o755);
    const proc = startProcess(PGBOUNCER_BIN, [configPath], osUser ? { asUser: osUser } : {});
    try {
      await waitForOutput(proc, (out) => out.includes("process up"), "pgbouncer", 15_000);
      return { port, process: proc, version, stop: () => proc.stop() };
    } catch (err) {
      await proc.stop();
      if (attempt >= 5 || !/Address already in use/.test(proc.output())) throw err;
    }
  }
}

export interface RdsdDaemon {
  /** Listen ports of the targets, in config order (t0 first); the last one has allowOtherUsers: true. */
  ports: number[];
  process: RunningProcess;
  /** RDSD_STATE_DIR and RDSD_RUNTIME_DIR of this daemon: `rdsd status` needs them to find its control socket. */
  env: { RDSD_STATE_DIR: string; RDSD_RUNTIME_DIR: string };
  sample(): Promise<ProcessSample>;
  stop(): Promise<void>;
}

/** `rdsd daemon` as a real process with `targets` targets, all on the bench database (direct driver). */
export async function startRdsd(dir: string, db: BenchDatabase, tls: BenchTls, targets: number, opts: { cpuProfileDir?: string } = {}): Promise<RdsdDaemon> {
  const ports: number[] = [];
  for (let i = 0; i < targets; i++) ports.push(await freePort());
  const yaml = directDaemonConfig(
    tls.caPath,
    ports.map((port, i) => ({
      port,
      databasePort: db.server.port,
      // The last target skips the local-user check, so the bench can show what that check costs per connection.
      extra: i === targets - 1 && targets > 1 ? ["allowOtherUsers: true"] : [],
    })),
  );
  return startDaemonProcess(join(dir, "rdsd-direct"), yaml, ports, { BENCH_DB_PASSWORD: db.password }, opts);
}

/**
 * The YAML of a daemon whose targets t0, t1, ... (direct driver, password login as the bench user) listen on
 * their `port` and reach the bench database at 127.0.0.1:`databasePort`; `extra` lines are added to a target.
 */
export function directDaemonConfig(caPath: string, targets: Array<{ port: number; databasePort: number; extra?: string[] }>): string {
  const lines = [
    "defaults:",
    `  user: ${BENCH_USER}`,
    "  auth: { password: { env: BENCH_DB_PASSWORD } }",
    `  tls: { ca: ${caPath} }`,
    "  tunnel: { driver: direct }",
    "targets:",
  ];
  targets.forEach((target, i) => {
    lines.push(`  t${i}:`, `    host: ${RDS_HOST}`, `    listen: "127.0.0.1:${target.port}"`, `    database: ${BENCH_DATABASE}`, `    tunnel: { address: "127.0.0.1:${target.databasePort}" }`);
    for (const line of target.extra ?? []) lines.push(`    ${line}`);
  });
  return lines.join("\n") + "\n";
}

/** Runs `rdsd daemon --config` on the given YAML with its own state directory; resolves once it says it runs. */
export async function startDaemonProcess(dir: string, configYaml: string, ports: number[], env: NodeJS.ProcessEnv, opts: { cpuProfileDir?: string } = {}): Promise<RdsdDaemon> {
  await mkdir(dir, { recursive: true });
  const configPath = join(dir, "rdsd.yaml");
  await writeFile(configPath, configYaml);
  // Its own state and runtime (control socket) directories: never another daemon's on this machine.
  const daemonEnv = { RDSD_STATE_DIR: join(dir, "state"), RDSD_RUNTIME_DIR: join(dir, "run") };
  const nodeArgs = opts.cpuProfileDir ? ["--cpu-prof", `--cpu-prof-dir=${opts.cpuProfileDir}`] : [];
  const proc = startProcess(process.execPath, [...nodeArgs, RDSD_BIN, "daemon", "--config", configPath], {
    env: { ...process.env, ...daemonEnv, ...env },
  });
  try {
    await waitForOutput(proc, (out) => out.includes("rdsd is running"), "rdsd daemon", 30_000);
  } catch (err) {
    await proc.stop();
    throw err;
  }
  return { ports, process: proc, env: daemonEnv, sample: () => sampleProcess(proc.pid), stop: () => proc.stop() };
}
