import { readFile } from "node:fs/promises";
import net from "node:net";
import type { Duplex } from "node:stream";
import type { TargetConfig } from "@rdsd/config";
import type { PemKeyPair } from "@rdsd/certs";
import { describeCredentialError, resolveRegion, type IamTokenCache } from "@rdsd/iam";
import { DirectDialer, iamAuth, passwordAuth, ProxyError, TargetProxy, type Dialer, type UpstreamAuth } from "@rdsd/proxy";
import type { DaemonLogger } from "./logger.js";

/** The states `rdsd status` reports, shared with tunnels. */
export type TargetState = "idle" | "connecting" | "ready" | "degraded" | "reconnecting" | "failed";

/** One target as `rdsd status --json` shows it. Stable shape: scripts depend on it. */
export interface TargetStatus {
  name: string;
  /** "127.0.0.1:6432", "[::1]:6432". */
  listen: string[];
  state: TargetState;
  driver: TargetConfig["tunnel"]["driver"];
  host: string;
  port: number;
  user: string;
  /** Open client connections. */
  connections: number;
  bytesFromClients: number;
  bytesToClients: number;
  /** SSM session ids in use (empty for the direct driver). */
  sessionIds: string[];
  /** When the target entered its current state. */
  since: string;
  /** Age of the cached IAM token in seconds, null when none (password auth, or none signed yet). */
  tokenAgeSeconds: number | null;
  lastError: { message: string; fix: string } | null;
}

/** What a target needs from the daemon around it. */
export interface TargetServices {
  logger: DaemonLogger;
  tokens: IamTokenCache;
  awsProfile: string | undefined;
  awsRegion: string | undefined;
  /** Local TLS certificate for clients. */
  localCertificate: PemKeyPair;
  /** The PEM text of the CAs for `tls.ca` ("rds" or a path). */
  loadCa(ca: string): Promise<string>;
}

/**
 * One configured database: its proxy (listeners and client connections) and the way to the database.
 * A target that cannot be prepared (no CA, no region) still listens, so its clients learn why.
 */
export class Target {
  private state: TargetState = "idle";
  private since = new Date();
  private setupError: { message: string; fix: string } | null = null;
  private region: string | undefined;
  private proxy: TargetProxy | undefined;

  constructor(
    readonly config: TargetConfig,
    private readonly services: TargetServices,
  ) {}

  get name(): string {
    return this.config.name;
  }

  async start(): Promise<void> {
    const log = this.services.logger.child({ target: this.name });
    this.setState("connecting");
    let ca = "";
    let dialer: Dialer;
    try {
      ca = await this.services.loadCa(this.config.tls.ca);
      if (this.config.auth.kind === "iam") {
        this.region = (await resolveRegion({ region: this.services.awsRegion, profile: this.services.awsProfile, host: this.config.host })).region;
      }
      dialer = this.createDialer();
    } catch (err) {
      const failure = err instanceof ProxyError ? err : new ProxyError((err as Error).message, "fix the target's settings, then `rdsd reload`");
      this.setupError = { message: failure.message, fix: failure.fix };
      dialer = new UnavailableDialer(failure);
      log.error("target cannot reach its database", { error: failure.message, fix: failure.fix });
    }

    this.proxy = new TargetProxy({
      name: this.name,
      listen: this.config.listen,
      upstream: { host: this.config.host, port: this.config.port, user: this.config.user, ca, auth: this.upstreamAuth() },
      defaultDatabase: this.config.database,
      dialer,
      clientTls: this.config.clientTls ? this.services.localCertificate : null,
      logger: log,
    });
    try {
      await this.proxy.start();
    } catch (err) {
      this.setupError = { message: (err as Error).message, fix: "free the port or change this target's listen setting, then `rdsd reload`" };
      this.setState("failed");
      throw err;
    }
    this.setState(this.setupError ? "failed" : "ready");
    log.info("listening", { listen: this.listenAddresses().join(", "), via: dialer.describe() });
  }

  async stop(graceMs: number): Promise<void> {
    await this.proxy?.stop(graceMs);
    this.setState("idle");
  }

  status(): TargetStatus {
    const stats = this.proxy?.stats();
    const token = this.config.auth.kind === "iam" && this.region ? this.services.tokens.tokenAgeMs(this.tokenKey()) : undefined;
    const lastClientError = stats?.lastError ? { message: stats.lastError.message, fix: stats.lastError.fix } : null;
    return {
      name: this.name,
      listen: this.listenAddresses(),
      state: this.state,
      driver: this.config.tunnel.driver,
      host: this.config.host,
      port: this.config.port,
      user: this.config.user,
      connections: stats?.connections ?? 0,
      bytesFromClients: stats?.bytesFromClients ?? 0,
      bytesToClients: stats?.bytesToClients ?? 0,
      sessionIds: [],
      since: this.since.toISOString(),
      tokenAgeSeconds: token === undefined ? null : Math.round(token / 1000),
      lastError: this.setupError ?? lastClientError,
    };
  }

  private listenAddresses(): string[] {
    const bound = this.proxy?.addresses() ?? this.config.listen;
    return bound.map((a) => (net.isIPv6(a.host) ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`));
  }

  private setState(state: TargetState): void {
    if (state !== this.state) {
      this.state = state;
      this.since = new Date();
    }
  }

  private tokenKey() {
    return { host: this.config.host, port: this.config.port, user: this.config.user, region: this.region ?? "" };
  }

  private upstreamAuth(): UpstreamAuth {
    if (this.config.auth.kind === "password") return passwordAuth(this.config.auth.source);
    const profile = this.services.awsProfile;
    return iamAuth(this.services.tokens, this.tokenKey(), (err) => describeCredentialError(err, profile));
  }

  private createDialer(): Dialer {
    const tunnel = this.config.tunnel;
    switch (tunnel.driver) {
      case "direct":
        return new DirectDialer(tunnel.address?.host ?? this.config.host, tunnel.address?.port ?? this.config.port);
      case "native":
      case "plugin":
        throw new ProxyError(`the ${tunnel.driver} SSM tunnel driver is not available in this build`, "use tunnel.driver: direct for now");
    }
  }
}

/** Stands in for a way to the database that could not be set up: every client is told why. */
class UnavailableDialer implements Dialer {
  constructor(private readonly failure: ProxyError) {}
  describe(): string {
    return "unavailable";
  }
  dial(): Promise<Duplex> {
    return Promise.reject(this.failure);
  }
}

/** Reads a PEM file of CAs named by tls.ca. */
export async function readCaFile(path: string): Promise<string> {
  try {
    return await readFile(path, "utf8");
  } catch (err) {
    throw new ProxyError(`cannot read the CA file ${path} (${(err as NodeJS.ErrnoException).code})`, "set tls.ca to a readable PEM file, or to `rds` for the RDS CA bundle");
  }
}
