import { EventEmitter } from "node:events";
import type { TargetConfig } from "@rdsd/config";
import { credentialProviderFor } from "@rdsd/iam";
import type { AwsCredentialIdentityProvider } from "@rdsd/iam";
import { DirectDialer } from "@rdsd/proxy";
import type { Dialer } from "@rdsd/proxy";
import { randomUuid } from "@rdsd/ssm-protocol";
import { BastionResolver } from "./bastion.js";
import { systemClock } from "./clock.js";
import type { Clock } from "./clock.js";
import type { DataChannelOptions } from "./data-channel.js";
import { TunnelDialer } from "./dialer.js";
import { silentLogger } from "./logger.js";
import type { TunnelLogger } from "./logger.js";
import { NativeDriver } from "./native-driver.js";
import { PluginDriver } from "./plugin-driver.js";
import type { SessionFactory } from "./session.js";
import { SsmApi } from "./ssm-api.js";
import { Supervisor } from "./supervisor.js";
import type { SupervisorOptions, SupervisorStatus, TunnelState } from "./supervisor.js";

/** One ClientId per rdsd process, as the official client has one per process. */
const PROCESS_CLIENT_ID = randomUuid();

export interface TunnelDeps {
  region: string;
  /** AWS profile (named in fixes, and used for credentials when `credentials` is not given). */
  profile?: string | undefined;
  /** Default: the shared, memoized provider of `profile` (SSO included) from @rdsd/iam. */
  credentials?: AwsCredentialIdentityProvider;
  /** SSM endpoint (the emulator); default: the SDK's resolution, which honours AWS_ENDPOINT_URL_SSM. */
  endpoint?: string | undefined;
  logger?: TunnelLogger;
  clock?: Clock;
  /** Use this API instead of building one (shared between targets of one daemon, or tests). */
  api?: SsmApi;
  /** Tuning of the supervisor (probe intervals, backoff, limits). */
  supervisor?: Partial<Omit<SupervisorOptions, "name" | "host" | "port" | "factory" | "bastion">>;
  /** Tuning of native data channels. */
  channel?: Partial<Omit<DataChannelOptions, "session" | "clientId" | "resume">>;
  /** How long a connecting client waits for a tunnel being rebuilt (default 15 s). */
  dialWaitMs?: number;
}

/** What `rdsd status` shows for a target's tunnel. */
export interface TunnelStatus extends Omit<SupervisorStatus, "driver"> {
  name: string;
  driver: "native" | "plugin" | "direct";
  /** The database endpoint the tunnel reaches. */
  host: string;
  port: number;
}

/** A target's tunnel: the proxy dials through `dialer`; the daemon starts, stops, restarts and watches it. */
export interface Tunnel {
  readonly dialer: Dialer;
  start(): void;
  /** Sessions terminated on AWS, processes gone. */
  stop(): Promise<void>;
  restart(): Promise<void>;
  status(): TunnelStatus;
  on(event: "state", listener: (status: TunnelStatus) => void): this;
  off(event: "state", listener: (status: TunnelStatus) => void): this;
}

/** Builds the tunnel a target's config asks for. Nothing opens before start(). */
export function createTunnel(target: TargetConfig, deps: TunnelDeps): Tunnel {
  if (target.tunnel.driver === "direct") return new DirectTunnel(target);
  if (!target.bastion) throw new Error(`target ${target.name}: the ${target.tunnel.driver} driver needs a bastion`);
  const logger = deps.logger ?? silentLogger;
  const clock = deps.clock ?? systemClock;
  const api =
    deps.api ??
    new SsmApi({ region: deps.region, profile: deps.profile, endpoint: deps.endpoint, credentials: deps.credentials ?? credentialProviderFor({ profile: deps.profile, region: deps.region }) });
  const bastion = new BastionResolver(target.bastion, api, clock);
  const factory: SessionFactory =
    target.tunnel.driver === "plugin"
      ? new PluginDriver({ api, pluginPath: target.tunnel.pluginPath, host: target.host, port: target.port, profile: deps.profile, endpoint: deps.endpoint, logger })
      : new NativeDriver({ api, host: target.host, port: target.port, clientId: PROCESS_CLIENT_ID, logger, channel: { clock, ...deps.channel } });
  const supervisor = new Supervisor({
    ...deps.supervisor,
    name: target.name,
    host: target.host,
    port: target.port,
    mode: target.tunnel.mode,
    idleTimeoutMs: target.tunnel.idleTimeoutMs,
    sessions: target.tunnel.sessions,
    factory,
    bastion,
    clock,
    logger,
  });
  return new SupervisedTunnel(target, supervisor, new TunnelDialer(supervisor, `SSM ${factory.driver} via ${bastion.describe()} to ${target.host}:${target.port}`, deps.dialWaitMs), deps.api ? undefined : api);
}

class SupervisedTunnel extends EventEmitter<{ state: [TunnelStatus] }> implements Tunnel {
  constructor(
    private readonly target: TargetConfig,
    readonly supervisor: Supervisor,
    readonly dialer: Dialer,
    private readonly ownApi: SsmApi | undefined,
  ) {
    super();
    supervisor.on("state", () => this.emit("state", this.status()));
  }

  start(): void {
    this.supervisor.start();
  }

  async stop(): Promise<void> {
    await this.supervisor.stop();
    this.ownApi?.destroy();
  }

  restart(): Promise<void> {
    return this.supervisor.restart();
  }

  status(): TunnelStatus {
    return { ...this.supervisor.status(), name: this.target.name, host: this.target.host, port: this.target.port };
  }
}

/** driver: direct: no tunnel, a TCP connection to tunnel.address (or host:port). Always "ready" while started. */
class DirectTunnel extends EventEmitter<{ state: [TunnelStatus] }> implements Tunnel {
  readonly dialer: Dialer;
  private started = false;
  private since = Date.now();

  constructor(private readonly target: TargetConfig) {
    super();
    const address = target.tunnel.address ?? { host: target.host, port: target.port };
    this.dialer = new DirectDialer(address.host, address.port);
  }

  start(): void {
    this.started = true;
    this.since = Date.now();
    this.emit("state", this.status());
  }

  async stop(): Promise<void> {
    this.started = false;
    this.since = Date.now();
    this.emit("state", this.status());
  }

  async restart(): Promise<void> {}

  status(): TunnelStatus {
    const state: TunnelState = this.started ? "ready" : "idle";
    return {
      name: this.target.name,
      host: this.target.host,
      port: this.target.port,
      driver: "direct",
      mode: this.target.tunnel.mode,
      state,
      since: this.since,
      sessionIds: [],
      sessions: [],
      bastion: null,
      bastionSelector: this.dialer.describe(),
      connections: 0,
      lastError: null,
      consecutiveFailures: 0,
      warnings: [],
    };
  }
}
