import { mkdir } from "node:fs/promises";
import { issueLocalhostCertificate, loadOrCreateLocalCa, type PemKeyPair } from "@rdsd/certs";
import { diffConfigs, loadConfig, type RdsdConfig } from "@rdsd/config";
import { runtimeDir } from "@rdsd/control";
import { ControlError, type Problem, type ProbeReport, type ReloadReport, type TargetStatus } from "@rdsd/control";
import { credentialProviderFor, IamTokenCache } from "@rdsd/iam";
import { ProxyError } from "@rdsd/proxy";
import type { DaemonLogger } from "./logger.js";
import { probeTarget } from "./probe.js";
import { loadRdsCaBundle, RDS_CA_BUNDLE_URL, rdsCaBundlePath } from "./rds-ca-bundle.js";
import { readCaFile, Target, type TargetServices } from "./target.js";
import { SessionJournal } from "./session-journal.js";
import { desktopNotifier, SsoExpiryWatch } from "./sso-watch.js";
import { ssmTunnelFactory, terminateLeftoverSessions } from "./ssm-tunnels.js";
import type { TunnelFactory } from "./tunnel-seam.js";

export interface DaemonOptions {
  configPath: string;
  stateDir: string;
  /** Where `socket: true` targets put their socket directories (the control socket's directory). */
  runtimeDir?: string;
  logger: DaemonLogger;
  /** Open client connections get this long to finish on stop and on target removal. Default 5 s. */
  graceMs?: number;
  /** SSM tunnels for the native and plugin drivers; default @rdsd/tunnel's. */
  createTunnel?: TunnelFactory;
  /** Called after any target's state changed. */
  onTargetState?: () => void;
}

/**
 * The composition root: config in, one Target per entry out. Holds no protocol logic.
 * One bad target never blocks the others: each starts, fails and reports on its own.
 */
export class Daemon {
  private config: RdsdConfig | undefined;
  private readonly targets = new Map<string, Target>();
  /** One provider per distinct profile (the process-wide registry), one token slot per (profile, host, port, user, region). */
  private readonly tokens = new IamTokenCache({ credentialsFor: (profile) => credentialProviderFor({ profile }) });
  private readonly tunnels: TunnelFactory & { destroy?(): void };
  private readonly journal: SessionJournal;
  private localCertificate: PemKeyPair | undefined;
  private localCaPath = "";
  /** The RDS CA bundle being loaded: targets starting together share one read (and at most one download). */
  private rdsCaBundle: Promise<string> | undefined;
  private ssoWatch: SsoExpiryWatch | undefined;
  readonly startedAt = new Date();

  constructor(private readonly options: DaemonOptions) {
    this.journal = SessionJournal.inStateDir(options.stateDir);
    this.tunnels = options.createTunnel ?? ssmTunnelFactory({ journal: this.journal });
  }

  get localCa(): string {
    return this.localCaPath;
  }

  /** Loads the config (a ConfigError is thrown as is) and starts every target. */
  async start(): Promise<void> {
    const config = await loadConfig(this.options.configPath, { runtimeDir: this.options.runtimeDir ?? runtimeDir() });
    await mkdir(this.options.stateDir, { recursive: true, mode: 0o700 });
    const localCa = await loadOrCreateLocalCa(this.options.stateDir);
    this.localCaPath = localCa.caPath;
    this.localCertificate = await issueLocalhostCertificate(localCa.ca);
    if (localCa.created) this.options.logger.info("created the local CA for client TLS", { path: localCa.caPath });
    this.config = config;
    // Sessions a killed run left open on AWS are ended before this run opens its own.
    await terminateLeftoverSessions(this.journal, (profile) => credentialProviderFor({ profile }), this.options.logger);
    await Promise.all(config.targets.map((t) => this.startTarget(t.name, config)));
    this.ssoWatch = new SsoExpiryWatch(this.options.logger, await desktopNotifier());
    this.ssoWatch.start(() => this.config);
  }

  /** Re-reads the config and applies only the differences. A bad file changes nothing (its ConfigError is thrown). */
  async reload(): Promise<ReloadReport> {
    const next = await loadConfig(this.options.configPath, { runtimeDir: this.options.runtimeDir ?? runtimeDir() });
    const previous = this.config!;
    const diff = diffConfigs(previous, next);
    this.config = next;
    await this.ssoWatch?.check(next).catch(() => {});
    const grace = this.options.graceMs ?? 5_000;
    // Stop first, so a port moving from one target to another is free when the other starts.
    await Promise.all([...diff.removed, ...diff.changed].map(async (name) => {
      await this.targets.get(name)?.stop(grace);
      this.targets.delete(name);
    }));
    const started = await Promise.all([...diff.added, ...diff.changed].map((name) => this.startTarget(name, next)));
    const failed = started.filter((problem): problem is NonNullable<typeof problem> => problem !== undefined);
    this.options.logger.info("configuration reloaded", { added: diff.added.join(",") || "-", removed: diff.removed.join(",") || "-", changed: diff.changed.join(",") || "-", failed: failed.map((f) => f.target).join(",") || "-" });
    return { added: diff.added, removed: diff.removed, changed: diff.changed, unchanged: diff.unchanged, failed };
  }

  /** Restarts one target's way to the database, or every target's. Others are untouched. */
  async restart(name?: string): Promise<string[]> {
    const chosen = name ? [this.target(name)] : [...this.targets.values()];
    await Promise.all(chosen.map((t) => t.restart()));
    return chosen.map((t) => t.name);
  }

  /** `rdsd test`: the target's path, stage by stage. */
  probe(name: string): Promise<ProbeReport> {
    const target = this.target(name);
    return probeTarget(name, target.probeInputs(), target.config.tunnel.driver);
  }

  async stop(): Promise<void> {
    this.ssoWatch?.stop();
    const grace = this.options.graceMs ?? 5_000;
    await Promise.all([...this.targets.values()].map((t) => t.stop(grace)));
    this.targets.clear();
    this.tunnels.destroy?.();
  }

  /** Every target in config order, or the one named. */
  targetStatus(name?: string): TargetStatus[] {
    if (name) return [this.target(name).status()];
    return this.config ? this.config.targets.flatMap((t) => this.targets.get(t.name)?.status() ?? []) : [];
  }

  private target(name: string): Target {
    const target = this.targets.get(name);
    if (!target) {
      const known = [...this.targets.keys()].join(", ") || "none";
      throw new ControlError("unknown-target", `no target named ${name} (targets: ${known})`, "name one of the targets in the config file");
    }
    return target;
  }

  /** Starts one target; a target that cannot start stays listed (failed, with its error) and its problem is returned. */
  private async startTarget(name: string, config: RdsdConfig): Promise<({ target: string } & Problem) | undefined> {
    const targetConfig = config.targets.find((t) => t.name === name)!;
    const target = new Target(targetConfig, this.services());
    this.targets.set(name, target);
    try {
      await target.start();
      return undefined;
    } catch (err) {
      this.options.logger.error("target failed to start", { target: name, error: (err as Error).message });
      const problem = target.status().lastError ?? { message: (err as Error).message, fix: "see `rdsd logs`" };
      return { target: name, ...problem };
    }
  }

  private services(): TargetServices {
    return {
      logger: this.options.logger,
      tokens: this.tokens,
      localCertificate: this.localCertificate!,
      loadCa: (ca) => this.loadCa(ca),
      credentialsFor: (profile) => credentialProviderFor({ profile }),
      createTunnel: this.tunnels,
      ...(this.options.onTargetState ? { onStateChange: this.options.onTargetState } : {}),
    };
  }

  private async loadCa(ca: string): Promise<string> {
    if (ca !== "rds") return readCaFile(ca);
    try {
      // Forgotten once settled, so a later restart or reload reads the file again (a replaced bundle takes effect).
      return await (this.rdsCaBundle ??= loadRdsCaBundle(this.options.stateDir).finally(() => (this.rdsCaBundle = undefined)));
    } catch (err) {
      throw new ProxyError(`the RDS CA bundle is not available: ${(err as Error).message}`, `download ${RDS_CA_BUNDLE_URL} to ${rdsCaBundlePath(this.options.stateDir)}, or set tls.ca to a PEM file`);
    }
  }
}
