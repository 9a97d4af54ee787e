import { readFile } from "node:fs/promises";
import type { Duplex } from "node:stream";
import { isLoopback, joinHostPort, type TargetConfig } from "@rdsd/config";
import type { PemKeyPair } from "@rdsd/certs";
import type { Problem, ProbeStageName, TargetState, TargetStatus } from "@rdsd/control";
import { configuredEndpoint, describeCredentialError, regionConflict, regionFromRdsHostname, resolveRegion, type AwsCredentialIdentityProvider, type IamTokenCache, type IamTokenKey } from "@rdsd/iam";
import { DirectDialer, iamAuth, passwordAuth, ProxyError, TargetProxy, type Dialer, type UpstreamAuth, type UpstreamTarget } from "@rdsd/proxy";
import type { DaemonLogger } from "./logger.js";
import type { TunnelFactory, TunnelHandle } from "./tunnel-seam.js";

export type { TargetState, TargetStatus } from "@rdsd/control";

/** What a target needs from the daemon around it. */
export interface TargetServices {
  logger: DaemonLogger;
  /** IAM tokens of every target, one slot per (profile, host, port, user, region). */
  tokens: IamTokenCache;
  /** Local TLS certificate for clients. */
  localCertificate: PemKeyPair;
  /** The PEM text of the CAs for `tls.ca` ("rds" or a path). */
  loadCa(ca: string): Promise<string>;
  /** The shared credential provider of a profile (one per distinct profile): for SSM calls. */
  credentialsFor(profile: string | undefined): AwsCredentialIdentityProvider;
  /** Builds SSM tunnels for the native and plugin drivers. */
  createTunnel: TunnelFactory;
  /** Called after this target's state changed (systemd's STATUS line follows it). */
  onStateChange?: () => void;
}

/** What `rdsd test` needs to walk the target's own path stage by stage. */
export interface ProbeInputs {
  dialer: Dialer;
  upstream: UpstreamTarget;
  database: string | undefined;
  tunnel: TunnelHandle | undefined;
  /** tls.ca as the user wrote it: "rds" or a file. */
  caSource: string;
  setupError: Problem | null;
  /** "profile P, region R" for a target that makes AWS calls; undefined otherwise. */
  aws: string | undefined;
  /** The stage a setup error belongs to: "ca" (tls.ca could not be loaded) or "credentials" (region, AWS setup). */
  setupStage: ProbeStageName;
}

/**
 * One configured database: its proxy (listeners and client connections) and the way to the database
 * (a direct dialer, or a tunnel whose state becomes the target's). A target that cannot be prepared
 * (no CA, no region) still listens, so its clients learn why.
 */
export class Target {
  private state: TargetState = "idle";
  private since = new Date();
  private setupError: Problem | null = null;
  private setupStage: ProbeStageName = "credentials";
  /** Where this target's SSM calls go (target aws.region, the profile's region, $AWS_REGION). */
  private region: string | undefined;
  /** What its IAM tokens are signed for: an RDS host's own region, else `region`. */
  private tokenRegion: string | undefined;
  private ssmEndpoint: string | undefined;
  private ca = "";
  private proxy: TargetProxy | undefined;
  private tunnel: TunnelHandle | undefined;
  private dialer: Dialer | undefined;
  private readonly log: DaemonLogger;

  constructor(
    readonly config: TargetConfig,
    private readonly services: TargetServices,
  ) {
    this.log = services.logger.child({ target: config.name });
  }

  get name(): string {
    return this.config.name;
  }

  async start(): Promise<void> {
    this.setState("connecting");
    await this.prepare();
    this.proxy = new TargetProxy({
      name: this.name,
      listen: this.config.listen,
      upstream: this.upstream(),
      defaultDatabase: this.config.database,
      dialer: this.dialer!,
      clientTls: this.config.clientTls ? this.services.localCertificate : null,
      allowOtherUsers: this.config.allowOtherUsers === true,
      pool: this.config.pool && {
        idle: this.config.pool.idle,
        idleTimeoutMs: this.config.pool.idleTimeoutMs,
        // Spares follow use (eager or lazy): none before the first client, none idleTimeout after the last.
        spares: this.config.pool.spares,
      },
      ...(this.config.socket ? { socket: this.config.socket } : {}),
      ...(this.config.parameters ? { parameters: this.config.parameters } : {}),
      readOnly: this.config.readOnly === true,
      logger: this.log,
    });
    this.warnAboutOptIns();
    try {
      await this.proxy.start();
    } catch (err) {
      this.setupError = { message: (err as Error).message, fix: this.config.socket ? "free the port or the socket (or change this target's listen or socket setting), then `rdsd reload`" : "free the port or change this target's listen setting, then `rdsd reload`" };
      this.setState("failed");
      await this.tunnel?.stop();
      throw err;
    }
    this.log.info("listening", { listen: this.listenAddresses().join(", "), ...(this.config.socket ? { socket: this.config.socket.path } : {}), via: this.dialer!.describe() });
    await this.startTunnel();
  }

  /** Rebuilds the way to the database (a new tunnel; for direct, a fresh setup). Open relays keep theirs. */
  async restart(): Promise<void> {
    this.log.info("restarting");
    // Parked connections ride on the old way to the database: a restart must not hand them out.
    this.proxy?.closeIdle();
    if (this.tunnel && !this.setupError) {
      await this.tunnel.restart();
      this.followTunnel();
      return;
    }
    this.setState("connecting");
    await this.tunnel?.stop();
    this.tunnel = undefined;
    await this.prepare();
    this.proxy?.reroute(this.dialer!, this.upstream());
    await this.startTunnel();
  }

  async stop(graceMs: number): Promise<void> {
    await this.proxy?.stop(graceMs);
    // After the clients: the tunnel's sessions are terminated on AWS once nothing rides on them.
    await this.tunnel?.stop();
    this.setState("idle");
  }

  status(): TargetStatus {
    const stats = this.proxy?.stats();
    const token = this.config.auth.kind === "iam" && this.tokenRegion ? this.services.tokens.tokenAgeMs(this.tokenKey()) : undefined;
    const tunnel = this.tunnel?.status();
    const lastClientError = stats?.lastError ? { message: stats.lastError.message, fix: stats.lastError.fix } : null;
    return {
      name: this.name,
      listen: this.listenAddresses(),
      socket: this.proxy?.socketPath() ?? this.config.socket?.path ?? null,
      state: this.state,
      driver: this.config.tunnel.driver,
      host: this.config.host,
      port: this.config.port,
      user: this.config.user,
      profile: this.profile ?? null,
      region: this.region ?? null,
      database: this.config.database ?? null,
      readOnly: this.config.readOnly === true,
      parameters: { ...this.config.parameters },
      connections: stats?.connections ?? 0,
      parked: stats?.parked ?? 0,
      spares: stats?.spares ?? 0,
      bytesFromClients: stats?.bytesFromClients ?? 0,
      bytesToClients: stats?.bytesToClients ?? 0,
      sessionIds: tunnel?.sessionIds ?? [],
      since: this.since.toISOString(),
      tokenAgeSeconds: token === undefined ? null : Math.round(token / 1000),
      lastError: this.setupError ?? tunnel?.lastError ?? lastClientError,
      warnings: tunnel?.warnings ?? [],
    };
  }

  probeInputs(): ProbeInputs {
    const aws = this.region === undefined ? undefined : `profile ${this.profile ?? "(default chain)"}, region ${this.region}`;
    return { dialer: this.dialer!, upstream: this.upstream(), database: this.config.database, tunnel: this.tunnel, caSource: this.config.tls.ca, setupError: this.setupError, setupStage: this.setupStage, aws };
  }

  /** The config's local-access opt-ins weaken rdsd's guard on the database login: say so at every start. */
  private warnAboutOptIns(): void {
    const exposed = this.config.listen.filter((a) => !isLoopback(a.host)).map((a) => joinHostPort(a.host, a.port));
    if (exposed.length > 0) {
      this.log.warn(`WARNING: target ${this.name} listens on non-loopback ${exposed.join(", ")} (allowNonLoopback: true): anyone who can reach it gets a database session logged in as ${this.config.user}`, { listen: exposed.join(", ") });
    }
    if (this.config.allowOtherUsers) {
      this.log.warn(`WARNING: target ${this.name} serves every local user (allowOtherUsers: true): they all log in as ${this.config.user}`);
    }
  }

  /** CA, region and the dialer; failures are kept as the target's error (clients are told). */
  private async prepare(): Promise<void> {
    this.setupError = null;
    this.setupStage = "ca";
    try {
      this.ca = await this.services.loadCa(this.config.tls.ca);
      this.setupStage = "credentials";
      if (this.config.auth.kind === "iam" || this.config.tunnel.driver !== "direct") {
        const resolved = await resolveRegion({ region: this.config.aws.region, profile: this.profile, host: this.config.host });
        this.region = resolved.region;
        this.tokenRegion = regionFromRdsHostname(this.config.host) ?? this.region;
        // SSM calls go to this region: one the host's name contradicts would only find no bastion there.
        const conflict = this.config.tunnel.driver === "direct" ? undefined : regionConflict(resolved, { name: this.name, host: this.config.host, profile: this.profile });
        if (conflict) throw new ProxyError(conflict.message, conflict.fix);
      }
      if (this.config.tunnel.driver !== "direct") this.ssmEndpoint = await configuredEndpoint("SSM", this.profile);
      this.dialer = this.createDialer();
    } catch (err) {
      const failure = err instanceof ProxyError ? err : new ProxyError((err as Error).message, "fix the target's settings, then `rdsd reload`");
      this.setupError = { message: failure.message, fix: failure.fix };
      this.dialer = new UnavailableDialer(failure);
      this.log.error("target cannot reach its database", { error: failure.message, fix: failure.fix });
    }
  }

  private async startTunnel(): Promise<void> {
    if (this.setupError) return this.setState("failed");
    if (!this.tunnel) return this.setState("ready");
    this.tunnel.on("state", () => this.followTunnel());
    try {
      await this.tunnel.start();
    } finally {
      this.followTunnel();
    }
  }

  private followTunnel(): void {
    const status = this.tunnel?.status();
    if (!status) return;
    const was = this.state;
    this.setState(status.state);
    // A lazy tunnel closed for lack of clients: its spares went with it and must not reopen it.
    if (status.state === "idle" && this.config.tunnel.mode === "lazy") this.proxy?.releaseSpares();
    // Every session up again (the first client came while the others were still opening, or one was replaced):
    // spares opened meanwhile all sit on the sessions that were up, where parallel transfers would share them.
    if (status.state === "ready" && was !== "ready" && this.config.tunnel.sessions > 1) this.proxy?.respreadSpares();
  }

  private listenAddresses(): string[] {
    const bound = this.proxy?.addresses();
    const addresses = bound && bound.length > 0 ? bound : this.config.listen;
    return addresses.map((a) => joinHostPort(a.host, a.port));
  }

  private setState(state: TargetState): void {
    if (state !== this.state) {
      this.state = state;
      this.since = new Date();
      this.services.onStateChange?.();
    }
  }

  private upstream(): UpstreamTarget {
    return { host: this.config.host, port: this.config.port, user: this.config.user, ca: this.ca, auth: this.upstreamAuth() };
  }

  /** The target's AWS profile; undefined = the SDK's default chain. */
  private get profile(): string | undefined {
    return this.config.aws.profile;
  }

  private tokenKey(): IamTokenKey {
    return { profile: this.profile, host: this.config.host, port: this.config.port, user: this.config.user, region: this.tokenRegion ?? "" };
  }

  private upstreamAuth(): UpstreamAuth {
    if (this.config.auth.kind === "password") return passwordAuth(this.config.auth.source);
    const profile = this.profile;
    return iamAuth(this.services.tokens, this.tokenKey(), (err) => describeCredentialError(err, profile));
  }

  private createDialer(): Dialer {
    const tunnel = this.config.tunnel;
    if (tunnel.driver === "direct") return new DirectDialer(tunnel.address?.host ?? this.config.host, tunnel.address?.port ?? this.config.port);
    const profile = this.profile;
    this.tunnel = this.services.createTunnel(this.config, { region: this.region!, profile, credentials: this.services.credentialsFor(profile), endpoint: this.ssmEndpoint, logger: this.log });
    return this.tunnel.dialer;
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
