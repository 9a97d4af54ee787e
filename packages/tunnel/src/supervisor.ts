import { lookup } from "node:dns/promises";
import { EventEmitter } from "node:events";
import type { Duplex } from "node:stream";
import { agentSupportsMultiplexing } from "@rdsd/ssm-protocol";
import { Backoff } from "./backoff.js";
import type { BackoffOptions } from "./backoff.js";
import { systemClock } from "./clock.js";
import type { Clock, TimerHandle } from "./clock.js";
import { problemOf, tunnelError } from "./errors.js";
import type { TunnelProblem } from "./errors.js";
import { silentLogger } from "./logger.js";
import type { TunnelLogger } from "./logger.js";
import { probeSession } from "./probe.js";
import type { SessionFactory, TunnelSession } from "./session.js";

/**
 * The states `rdsd status` shows. A tunnel never reports `failed`: it keeps retrying whatever the error, so
 * it is `reconnecting` (with lastError) until it heals; `failed` is left to targets that cannot retry.
 */
export type TunnelState = "idle" | "connecting" | "ready" | "degraded" | "reconnecting";

/** Where sessions go: a BastionResolver, or anything that picks an instance. */
export interface BastionSource {
  resolve(signal?: AbortSignal): Promise<string>;
  markFailed(instanceId: string): void;
  readonly current: string | undefined;
  describe(): string;
  /** The SSM agent version the instance reports (DescribeInstanceInformation); undefined when unknown. */
  agentVersion?(instanceId: string, signal?: AbortSignal): Promise<string | undefined>;
}

export interface SupervisorOptions {
  /** For logs and messages. */
  name: string;
  host: string;
  port: number;
  mode: "eager" | "lazy";
  /** Lazy mode: sessions close after this long without connections. */
  idleTimeoutMs: number;
  /** Sessions kept in parallel; connections are spread over them. */
  sessions: number;
  factory: SessionFactory;
  bastion: BastionSource;
  clock?: Clock;
  logger?: TunnelLogger;
  backoff?: BackoffOptions;
  /**
   * Check a session whose agent has sent nothing for this long (default 10 s), without the database: the native
   * driver's smux NOP, which the agent acknowledges. Checks run on the clock beat (wakeCheckIntervalMs).
   */
  livenessIntervalMs?: number;
  /**
   * End-to-end probe through the database (SSLRequest, TLS, close_notify) this often, for drivers that cannot
   * check liveness otherwise (the plugin driver; default 2 min). Native sessions are probed this way once, when new.
   */
  probeIntervalMs?: number;
  probeTimeoutMs?: number;
  /** Probe each new session through the database before handing it out (default true). */
  probeOnOpen?: boolean;
  /**
   * The database name's addresses as this machine resolves them (default: the system resolver). Recorded when a
   * session opens; after a ConnectToPortError a changed answer (a failover) replaces the session, since its agent
   * resolved the name once, at StartSession. Rejects when the name does not resolve here (nothing is replaced then).
   */
  resolveHost?: (host: string) => Promise<readonly string[]>;
  /** Replace sessions this old, before AWS's limits end them (default 50 min); the old one drains. */
  sessionMaxAgeMs?: number;
  /** A draining session is closed after this long even with connections on it (default 10 min). */
  drainTimeoutMs?: number;
  /** Opening one session (StartSession + handshake + probe) gives up after this long (default 30 s). */
  openTimeoutMs?: number;
  /** Consecutive failed opens after which a tunnel that was never up shows `reconnecting`, not `connecting` (default 3). */
  retryingAfter?: number;
  /**
   * The supervisor's one timer (default 5 s): checks the clock for jumps (a gap over wakeThresholdMs means the
   * machine slept), and runs the liveness checks and probes that are due.
   */
  wakeCheckIntervalMs?: number;
  wakeThresholdMs?: number;
  /**
   * Check a session at once (at the next beat) when data sent on it has had no acknowledgement for this long
   * (default 5 s; the agent acknowledges in milliseconds). A black-holed session is found in seconds instead of at
   * the data channel's own 20 s stall limit.
   */
  stallProbeMs?: number;
}

export interface SessionStatus {
  id: string;
  instanceId: string;
  activeStreams: number;
  /** Epoch ms when it was opened. */
  since: number;
  draining: boolean;
}

export interface SupervisorStatus {
  state: TunnelState;
  /** Epoch ms of the last state change. */
  since: number;
  driver: "native" | "plugin";
  mode: "eager" | "lazy";
  sessionIds: string[];
  sessions: SessionStatus[];
  /** The instance of the last session opened, or the configured one. */
  bastion: string | null;
  /** How the bastion is chosen ("i-0abc" or "tag Name=db-bastion"). */
  bastionSelector: string;
  /** Connections carried now (probes excluded). */
  connections: number;
  lastError: TunnelProblem | null;
  consecutiveFailures: number;
  /** Conditions that keep the tunnel "degraded" while it works (an SSM agent too old to multiplex). */
  warnings: TunnelProblem[];
}

interface Slot {
  index: number;
  session: TunnelSession | undefined;
  openedAt: number;
  opening: AbortController | undefined;
  retryTimer: TimerHandle | undefined;
  ageTimer: TimerHandle | undefined;
  backoff: Backoff;
  /** When the session was last probed through the database (drivers without checkAlive). */
  lastProbeAt: number;
  /** The bastion could not reach the database on the last try; the session stays for the next client. */
  destinationProblem: TunnelProblem | undefined;
  /** The database's addresses when the session opened (sorted, joined), when this machine could resolve them. */
  addresses: string | undefined;
  /** A re-resolution after a destination error is in flight. */
  reresolving: boolean;
}

/**
 * Owns the sessions of one target: opens them, probes them, replaces them (before known limits,
 * after failures), spreads connections over them, and publishes one state with the last error and its fix.
 * Events: "state" (SupervisorStatus) on each state change; "change" on anything a waiting dial cares about.
 */
export class Supervisor extends EventEmitter<{ state: [SupervisorStatus]; change: [] }> {
  private readonly clock: Clock;
  private readonly logger: TunnelLogger;
  private readonly slots: Slot[];
  private readonly draining = new Map<TunnelSession, TimerHandle | undefined>();
  /** Opens in flight and sessions being closed outside stop() (failed probes, replacements): stop() waits for them. */
  private readonly closing = new Set<Promise<void>>();
  /** The streams handed out, each with the session that carries it. */
  private readonly streams = new Map<Duplex, TunnelSession>();
  /** Of `streams`, those carrying no client now (see markIdle). */
  private readonly idleStreams = new Set<Duplex>();
  /**
   * Sessions open while the machine slept that have not passed a check since: their idle streams are not handed
   * out again. The wake checks every slot's session; sessions out of the slots (draining after a replacement,
   * or an old agent's single-use session carrying its one connection) are never checked and stay here.
   */
  private readonly uncheckedAfterSleep = new WeakSet<TunnelSession>();
  /** Client streams per session (probes excluded, counted synchronously): what connections are spread by. */
  private readonly load = new Map<TunnelSession, number>();
  private active = false;
  private stopped = true;
  private everReady = false;
  private stateValue: TunnelState = "idle";
  private stateSince: number;
  private lastError: TunnelProblem | null = null;
  private failures = 0;
  private failureSerial = 0;
  private idleTimer: TimerHandle | undefined;
  private wakeTimer: TimerHandle | undefined;
  /** Slots with a check in flight (liveness or probe): one per session at a time; a client after a wake waits for it. */
  private readonly checking = new Map<Slot, Promise<void>>();
  /** When each slot was last probed for a stall: a session that passes keeps its stall without a probe per beat. */
  private readonly stallProbedAt = new Map<Slot, number>();
  private lastBeat = 0;
  /**
   * Per bastion instance, its SSM agent too old to multiplex: a property of the instance, so it outlives the
   * sessions (status keeps it while one is replaced) until a session on that instance reports a newer agent.
   */
  private readonly agentWarnings = new Map<string, TunnelProblem>();
  /** Instances whose sessions carry one connection each (the agent cannot multiplex), as the last session showed. */
  private readonly singleUseInstances = new Set<string>();

  constructor(private readonly options: SupervisorOptions) {
    super();
    this.clock = options.clock ?? systemClock;
    this.logger = options.logger ?? silentLogger;
    this.stateSince = this.clock.now();
    const count = Math.max(1, Math.floor(options.sessions));
    this.slots = Array.from({ length: count }, (_, index) => ({
      index,
      session: undefined,
      openedAt: 0,
      opening: undefined,
      retryTimer: undefined,
      ageTimer: undefined,
      backoff: new Backoff(options.backoff),
      lastProbeAt: 0,
      destinationProblem: undefined,
      addresses: undefined,
      reresolving: false,
    }));
  }

  get state(): TunnelState {
    return this.stateValue;
  }

  /** Eager: opens every session now. Lazy: waits for the first connection. */
  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.startWakeWatch();
    if (this.options.mode === "eager") this.activate();
    else this.updateState();
  }

  /** Closes every session (TerminateSession on AWS) and waits for them. Pending dials fail. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.clock.clearTimeout(this.wakeTimer);
    this.clock.clearTimeout(this.idleTimer);
    await this.deactivate();
    this.emit("change");
  }

  /** Replaces every session now (new sessions, failure count reset). */
  async restart(): Promise<void> {
    const wasStopped = this.stopped;
    await this.deactivate();
    this.failures = 0;
    this.lastError = null;
    for (const slot of this.slots) slot.backoff.reset();
    if (wasStopped) return;
    if (this.options.mode === "eager" || this.streams.size > 0) this.activate();
    else this.updateState();
  }

  status(): SupervisorStatus {
    const sessions: SessionStatus[] = [];
    for (const slot of this.slots) {
      if (slot.session) sessions.push({ id: slot.session.id, instanceId: slot.session.instanceId, activeStreams: slot.session.activeStreams, since: slot.openedAt, draining: false });
    }
    for (const session of this.draining.keys()) {
      sessions.push({ id: session.id, instanceId: session.instanceId, activeStreams: session.activeStreams, since: 0, draining: true });
    }
    return {
      state: this.stateValue,
      since: this.stateSince,
      driver: this.options.factory.driver,
      mode: this.options.mode,
      sessionIds: sessions.map((s) => s.id),
      sessions,
      bastion: this.options.bastion.current ?? null,
      bastionSelector: this.options.bastion.describe(),
      connections: this.streams.size,
      lastError: this.lastError,
      consecutiveFailures: this.failures,
      warnings: this.warnings(),
    };
  }

  /** The agent warnings of the instances in use: those of the sessions, and the bastion (between sessions too). */
  private warnings(): TunnelProblem[] {
    const instances = new Set<string>();
    for (const slot of this.slots) if (slot.session) instances.add(slot.session.instanceId);
    if (this.options.bastion.current !== undefined) instances.add(this.options.bastion.current);
    return [...instances].flatMap((instance) => this.agentWarnings.get(instance) ?? []);
  }

  /**
   * Whether each stream costs a session of its own: the bastion's agent cannot multiplex, as its sessions showed.
   * The proxy keeps no warm spare then (each would start and spend a session).
   */
  get singleUse(): boolean {
    const instance = this.options.bastion.current;
    return instance !== undefined && this.singleUseInstances.has(instance);
  }

  /**
   * A stream to host:port for one client connection. During a rebuild it waits (up to `waitMs`) for a
   * session; it fails early with the last error once a fresh attempt has failed too. Rejects with a ProxyError.
   * `idle`: the stream will wait unused (a warm spare): it is idle from the start, so it never counts as a client
   * when the next ones are placed (its TLS handshake takes round trips, while concurrent clients dial).
   */
  async acquire(signal: AbortSignal, waitMs = 15_000, idle = false): Promise<Duplex> {
    if (this.stopped) throw tunnelError({ message: `the tunnel for ${this.options.name} is stopped`, fix: "start rdsd (or the target) again" });
    this.clock.clearTimeout(this.idleTimer);
    this.idleTimer = undefined;
    if (!this.active) this.activate();
    // After a sleep the sessions are checked before anyone uses them (the beat may not have run yet).
    this.noticeWake();
    const deadline = this.clock.now() + waitMs;
    const serialAtStart = this.failureSerial;
    this.kickRetries();
    for (;;) {
      if (signal.aborted) throw tunnelError({ message: "the connection was abandoned while waiting for the tunnel", fix: "" });
      if (this.stopped) throw tunnelError({ message: `the tunnel for ${this.options.name} was stopped`, fix: "start rdsd (or the target) again" });
      const pick = this.pick();
      const checking = pick && this.checking.get(pick.slot);
      const waitLeft = deadline - this.clock.now();
      if (checking && waitLeft > 0) {
        // A check is deciding whether this session is alive (after a wake, say): wait for it (within the client's
        // wait) rather than hand out a session whose websocket may be dead.
        await Promise.race([checking, this.nextChange(signal, waitLeft)]);
        continue;
      }
      if (pick) {
        // Count the connection on its session before waiting, so concurrent dials spread out.
        this.load.set(pick.session, (this.load.get(pick.session) ?? 0) + 1);
        try {
          const stream = await pick.session.openStream(signal).finally(() => this.unload(pick.session));
          this.track(stream, pick.session);
          if (idle) this.markIdle(stream, true);
          if (pick.session.singleUse) this.detachSpent(pick.slot, pick.session);
          return stream;
        } catch (err) {
          if (!pick.session.ended && pick.session.available) throw err;
          continue; // the session died under us: try another, or wait for its replacement
        }
      }
      // A failure that happened while this client waited, after earlier ones: say why now rather than at the deadline.
      if (this.failureSerial > serialAtStart && this.failures >= 2 && this.lastError) throw tunnelError(this.lastError);
      const left = deadline - this.clock.now();
      if (left <= 0) {
        throw tunnelError(
          this.lastError ?? { message: `the tunnel for ${this.options.name} was not ready within ${waitMs / 1000} s`, fix: "check `rdsd status`; rdsd keeps trying" },
        );
      }
      await this.nextChange(signal, left);
    }
  }

  // ---- sessions ----

  private activate(): void {
    if (this.stopped || this.active) return;
    this.active = true;
    for (const slot of this.slots) this.fill(slot);
    this.updateState();
  }

  private async deactivate(): Promise<void> {
    this.active = false;
    const closing: Promise<void>[] = [];
    for (const slot of this.slots) {
      slot.opening?.abort();
      slot.opening = undefined;
      this.clock.clearTimeout(slot.retryTimer);
      slot.retryTimer = undefined;
      const session = this.clearSlot(slot);
      if (session) closing.push(session.close());
    }
    for (const [session, timer] of this.draining) {
      this.clock.clearTimeout(timer);
      closing.push(session.close());
    }
    this.draining.clear();
    this.updateState();
    await Promise.all([...closing, ...this.closing].map((p) => p.catch(() => {})));
  }

  private closeLater(session: TunnelSession): void {
    const p = session.close().catch(() => {});
    this.closing.add(p);
    void p.finally(() => this.closing.delete(p));
  }

  /** Opens a session for the slot unless one is there or on its way. `replacing`: the current one drains once the new one is up. */
  private fill(slot: Slot, replacing = false): void {
    if (this.stopped || !this.active || slot.opening || (slot.session && !replacing)) return;
    this.clock.clearTimeout(slot.retryTimer);
    slot.retryTimer = undefined;
    const controller = new AbortController();
    slot.opening = controller;
    // stop() waits for opens in flight too: an aborted open terminates what it started on AWS.
    const p = this.open(slot, controller, replacing).catch(() => {});
    this.closing.add(p);
    void p.finally(() => this.closing.delete(p));
  }

  private async open(slot: Slot, controller: AbortController, replacing: boolean): Promise<void> {
    const timeoutMs = this.options.openTimeoutMs ?? 30_000;
    const timer = this.clock.setTimeout(() => controller.abort(), timeoutMs);
    let instanceId: string | undefined;
    let session: TunnelSession | undefined;
    let destination: TunnelProblem | undefined;
    let describedAgent: string | undefined;
    let addressCheck: Promise<string | undefined> | undefined;
    try {
      instanceId = await this.options.bastion.resolve(controller.signal);
      const agentCheck = this.describedAgentVersion(instanceId, controller.signal);
      addressCheck = this.databaseAddresses();
      session = await this.options.factory.open(instanceId, controller.signal);
      if (controller.signal.aborted) throw new Error("cancelled");
      // Cancelled (stop, restart, open timeout) during the probe: closing the session ends the probe's stream at once.
      const opened = session;
      const abandon = () => void opened.close().catch(() => {});
      controller.signal.addEventListener("abort", abandon, { once: true });
      try {
        // The one time a native session dials the database on its own: proof the whole path works before clients use it.
        if (this.options.probeOnOpen !== false && !session.singleUse) destination = await this.probeThroughDatabase(session);
        describedAgent = await agentCheck;
      } finally {
        controller.signal.removeEventListener("abort", abandon);
      }
      if (controller.signal.aborted) throw new Error("cancelled");
    } catch (err) {
      this.clock.clearTimeout(timer);
      if (session) await session.close().catch(() => {});
      if (slot.opening !== controller) return; // cancelled by stop/restart
      slot.opening = undefined;
      const problem =
        controller.signal.aborted && !(err instanceof Error && err.name === "ProxyError")
          ? { message: `opening an SSM session for ${this.options.name} took longer than ${timeoutMs / 1000} s`, fix: "check the bastion and this machine's network; rdsd keeps trying" }
          : problemOf(err, "opening the tunnel");
      if (instanceId && session === undefined) this.options.bastion.markFailed(instanceId);
      this.recordFailure(problem);
      this.scheduleRetry(slot);
      return;
    }
    this.clock.clearTimeout(timer);
    if (slot.opening !== controller || this.stopped || !this.active) {
      await session.close().catch(() => {});
      return;
    }
    slot.opening = undefined;
    const old = replacing ? this.clearSlot(slot) : undefined;
    if (old) this.drain(old);
    this.install(slot, session, destination, describedAgent);
    // Not awaited: a slow resolver must not hold the session back.
    void addressCheck?.then((addresses) => {
      if (slot.session === session) slot.addresses = addresses;
    });
  }

  /** The database name's addresses as this machine resolves them now; undefined when it cannot. */
  private async databaseAddresses(): Promise<string | undefined> {
    const resolve = this.options.resolveHost ?? (async (host: string) => (await lookup(host, { all: true })).map((a) => a.address));
    try {
      const addresses = await resolve(this.options.host);
      return addresses.length > 0 ? [...addresses].sort().join(",") : undefined;
    } catch {
      return undefined;
    }
  }

  /** After a destination error: a session whose agent dialed an address the name no longer has is replaced (once per change). */
  private async replaceIfMoved(slot: Slot, session: TunnelSession): Promise<void> {
    if (slot.reresolving || slot.addresses === undefined) return;
    slot.reresolving = true;
    try {
      const now = await this.databaseAddresses();
      if (slot.session !== session || now === undefined || now === slot.addresses) return;
      this.logger.info("the database's address changed (a failover?); replacing the session, whose agent dials the old one", { target: this.options.name, session: session.id, was: slot.addresses, now });
      this.fill(slot, true);
    } finally {
      slot.reresolving = false;
    }
  }

  /**
   * Probes through the database. A bastion that cannot reach the database is not the session's fault: that comes
   * back as the problem (the session stays); anything else (no answer: a dead path) rejects.
   */
  private async probeThroughDatabase(session: TunnelSession): Promise<TunnelProblem | undefined> {
    let destination: TunnelProblem | undefined;
    const onDestination = (problem: TunnelProblem) => (destination = problem);
    session.on("destination-error", onDestination);
    try {
      await probeSession(session, this.options.probeTimeoutMs ?? 8_000, this.options.host);
      return undefined;
    } catch (err) {
      if (destination) return destination;
      throw err;
    } finally {
      session.off("destination-error", onDestination);
    }
  }

  /** The bastion's SSM agent version as DescribeInstanceInformation tells it; undefined when unknown. Never rejects. */
  private async describedAgentVersion(instanceId: string, signal: AbortSignal): Promise<string | undefined> {
    return this.options.bastion.agentVersion?.(instanceId, signal).catch((err: Error) => {
      this.logger.debug("could not read the bastion's SSM agent version", { target: this.options.name, instance: instanceId, error: err.message });
      return undefined;
    });
  }

  /**
   * What a new session tells about its instance's agent: the version from its handshake (native), else the one
   * DescribeInstanceInformation gave. A newer agent clears the instance's warning; an unknown version keeps it.
   */
  private noteAgent(session: TunnelSession, describedAgent: string | undefined): void {
    const instance = session.instanceId;
    if (session.singleUse) this.singleUseInstances.add(instance);
    else this.singleUseInstances.delete(instance);
    const version = session.agentVersion ?? describedAgent;
    if (version === undefined) return;
    const warning = oldAgentWarning(instance, version);
    if (!warning) {
      this.agentWarnings.delete(instance);
      return;
    }
    if (this.agentWarnings.get(instance)?.message !== warning.message) this.logger.warn(warning.message, { target: this.options.name, fix: warning.fix });
    this.agentWarnings.set(instance, warning);
  }

  private install(slot: Slot, session: TunnelSession, destination?: TunnelProblem, describedAgent?: string): void {
    slot.session = session;
    slot.openedAt = this.clock.now();
    slot.lastProbeAt = this.clock.now();
    slot.destinationProblem = destination;
    slot.backoff.reset();
    this.failures = 0;
    this.everReady = true;
    this.logger.info("tunnel session ready", { target: this.options.name, session: session.id, instance: session.instanceId, slot: slot.index });
    this.noteAgent(session, describedAgent);
    if (destination) {
      this.lastError = destination;
      this.logger.warn("the bastion cannot reach the database; keeping the session for the next client", { target: this.options.name, session: session.id, error: destination.message });
    }
    session.on("end", (problem) => {
      if (slot.session !== session) return;
      this.clearSlot(slot);
      if (problem) {
        this.logger.warn("tunnel session ended", { target: this.options.name, session: session.id, error: problem.message });
        this.lastError = problem;
      }
      // A session that ended (idle timeout, drop that could not be resumed) is replaced at once; repeated failures back off.
      if (problem) this.scheduleRetry(slot, slot.backoff.failures === 0 ? 0 : undefined);
      else this.fill(slot);
      this.updateState();
    });
    // ConnectToPortError is per stream: that client got the error with its fix; the session itself is fine and
    // stays for the next one (a new session would only add StartSession calls while the database is unreachable).
    session.on("destination-error", (problem) => {
      if (slot.session !== session) return;
      slot.destinationProblem = problem;
      this.lastError = problem;
      this.updateState();
      void this.replaceIfMoved(slot, session);
    });
    session.on("destination-ok", () => {
      if (slot.session !== session || !slot.destinationProblem) return;
      if (this.lastError === slot.destinationProblem) this.lastError = null;
      slot.destinationProblem = undefined;
      this.logger.info("the bastion reaches the database again", { target: this.options.name, session: session.id });
      this.updateState();
    });
    const maxAge = this.options.sessionMaxAgeMs ?? 50 * 60_000;
    slot.ageTimer = this.clock.setTimeout(() => {
      if (slot.session === session) this.fill(slot, true);
    }, maxAge);
    this.updateState();
  }

  /** Takes the session out of the slot (timers cleared); the caller decides its fate. */
  private clearSlot(slot: Slot): TunnelSession | undefined {
    const session = slot.session;
    slot.session = undefined;
    slot.destinationProblem = undefined;
    slot.addresses = undefined;
    this.clock.clearTimeout(slot.ageTimer);
    slot.ageTimer = undefined;
    return session;
  }

  /** No new streams on `session`; it closes once its last stream does, or at the drain timeout. */
  private drain(session: TunnelSession): void {
    if (session.ended) return;
    if (session.activeStreams === 0) {
      this.closeLater(session);
      return;
    }
    const timer = this.clock.setTimeout(() => {
      this.draining.delete(session);
      this.closeLater(session);
    }, this.options.drainTimeoutMs ?? 10 * 60_000);
    this.draining.set(session, timer);
    session.once("end", () => {
      this.clock.clearTimeout(this.draining.get(session));
      this.draining.delete(session);
    });
  }

  /** A single-use session now carries its connection: it leaves the slot, which opens a fresh one. */
  private detachSpent(slot: Slot, session: TunnelSession): void {
    if (slot.session !== session) return;
    this.clearSlot(slot);
    this.drain(session);
    this.fill(slot);
  }

  private scheduleRetry(slot: Slot, delayMs?: number): void {
    if (this.stopped || !this.active) return;
    const delay = delayMs ?? slot.backoff.next();
    this.clock.clearTimeout(slot.retryTimer);
    slot.retryTimer = this.clock.setTimeout(() => {
      slot.retryTimer = undefined;
      this.fill(slot);
    }, delay);
    this.updateState();
  }

  /** A client is waiting: slots sleeping in backoff try again now. */
  private kickRetries(): void {
    for (const slot of this.slots) {
      if (slot.retryTimer !== undefined && !slot.session && !slot.opening) this.fill(slot);
    }
  }

  private recordFailure(problem: TunnelProblem): void {
    this.failures++;
    this.failureSerial++;
    this.lastError = problem;
    this.logger.warn("opening a tunnel session failed", { target: this.options.name, error: problem.message, failures: this.failures });
    this.updateState();
  }

  /**
   * The available session carrying the fewest clients now; among equals, the one with the fewest streams in all.
   * Idle streams (parked server connections, warm spares) move no data until a client takes them, so they only
   * break ties: a new connection goes beside an idle one rather than beside a busy transfer.
   */
  private pick(): { slot: Slot; session: TunnelSession } | undefined {
    const idle = new Map<TunnelSession, number>();
    for (const stream of this.idleStreams) {
      const session = this.streams.get(stream);
      if (session) idle.set(session, (idle.get(session) ?? 0) + 1);
    }
    let best: { slot: Slot; session: TunnelSession; busy: number; all: number } | undefined;
    for (const slot of this.slots) {
      const session = slot.session;
      if (!session || !session.available) continue;
      const all = this.load.get(session) ?? 0;
      const busy = all - (idle.get(session) ?? 0);
      if (!best || busy < best.busy || (busy === best.busy && all < best.all)) best = { slot, session, busy, all };
    }
    return best;
  }

  /**
   * A stream that carries no client now (a logged-in server connection parked for reuse) does not keep a
   * lazy tunnel open: the idle timer counts only streams in use. Closing the sessions closes the idle ones.
   */
  markIdle(stream: Duplex, idle: boolean): void {
    if (!this.streams.has(stream)) return;
    if (idle) {
      this.idleStreams.add(stream);
      this.armIdleTimer();
    } else {
      this.idleStreams.delete(stream);
      this.clock.clearTimeout(this.idleTimer);
      this.idleTimer = undefined;
    }
  }

  /**
   * Whether a stream handed out earlier may carry a new client: it waited parked with a logged-in server
   * connection, or as a warm spare, while nothing read from it. After the machine slept its session is
   * checked first (as for a new stream in acquire) and the answer waits for that check: a session found dead
   * is replaced, and its streams must not be handed out in the meantime. A session the wake does not check
   * (out of the slots, see uncheckedAfterSleep) is not vouched for after a sleep at all.
   */
  usable(stream: Duplex): boolean | Promise<boolean> {
    const session = this.streams.get(stream);
    if (!session || stream.destroyed) return false;
    this.noticeWake();
    if (session.ended) return false;
    const slot = this.slots.find((s) => s.session === session);
    const checking = slot && this.checking.get(slot);
    if (!checking) return !this.uncheckedAfterSleep.has(session);
    return checking.then(() => !this.uncheckedAfterSleep.has(session) && !session.ended && !stream.destroyed);
  }

  private track(stream: Duplex, session: TunnelSession): void {
    this.streams.set(stream, session);
    this.load.set(session, (this.load.get(session) ?? 0) + 1);
    stream.once("close", () => {
      this.streams.delete(stream);
      this.idleStreams.delete(stream);
      this.unload(session);
      this.armIdleTimer();
      for (const session of this.draining.keys()) if (session.activeStreams === 0) this.closeLater(session);
    });
  }

  /** Streams carrying a client now. */
  private get busyStreams(): number {
    return this.streams.size - this.idleStreams.size;
  }

  /** Lazy mode: once no stream carries a client, close the sessions after idleTimeout (unless one is used again). */
  private armIdleTimer(): void {
    if (this.busyStreams !== 0 || this.options.mode !== "lazy" || !this.active || this.stopped) return;
    this.clock.clearTimeout(this.idleTimer);
    this.idleTimer = this.clock.setTimeout(() => {
      this.idleTimer = undefined;
      if (this.busyStreams === 0) {
        this.logger.info("tunnel idle; closing its sessions", { target: this.options.name });
        void this.deactivate();
      }
    }, this.options.idleTimeoutMs);
  }

  private unload(session: TunnelSession): void {
    const left = (this.load.get(session) ?? 1) - 1;
    if (left > 0) this.load.set(session, left);
    else this.load.delete(session);
  }

  // ---- liveness, probes and sleep detection ----

  /**
   * Checks one session now: its driver's liveness check (no database), or for drivers without one an end-to-end
   * probe through the database. A dead session is replaced. Resolves when the check is over, whatever the outcome.
   */
  private check(slot: Slot): Promise<void> {
    const existing = this.checking.get(slot);
    if (existing) return existing;
    const session = slot.session;
    // A single-use session's one connection would be spent on a probe; its connection gets a fresh session anyway.
    if (!session || session.singleUse) return Promise.resolve();
    const run = async () => {
      try {
        if (session.checkAlive) {
          await session.checkAlive();
        } else {
          slot.lastProbeAt = this.clock.now();
          const destination = await this.probeThroughDatabase(session);
          if (destination && slot.session === session && !slot.destinationProblem) {
            slot.destinationProblem = destination;
            this.lastError = destination;
            this.updateState();
          }
        }
        this.uncheckedAfterSleep.delete(session);
      } catch (err) {
        if (slot.session !== session) return;
        const problem = problemOf(err, "probe");
        this.logger.warn("tunnel session failed its check; replacing it", { target: this.options.name, session: session.id, error: problem.message });
        this.lastError = problem;
        this.clearSlot(slot);
        this.closeLater(session);
        this.fill(slot);
        this.updateState();
      }
    };
    const p = run().finally(() => this.checking.delete(slot));
    this.checking.set(slot, p);
    return p;
  }

  /** On each beat: sessions whose sent data waits for an acknowledgement, that have gone quiet, or are due a probe. */
  private checkDue(): void {
    const stallLimit = this.options.stallProbeMs ?? 5_000;
    const quietLimit = this.options.livenessIntervalMs ?? 10_000;
    const probeEvery = this.options.probeIntervalMs ?? 120_000;
    const now = this.clock.now();
    for (const slot of this.slots) {
      const session = slot.session;
      if (!session || session.singleUse || this.checking.has(slot)) continue;
      const waited = session.unacknowledgedForMs ?? 0;
      if (waited >= stallLimit) {
        const last = this.stallProbedAt.get(slot);
        if (last === undefined || now - last >= waited) {
          // Not yet checked during this stall.
          this.stallProbedAt.set(slot, now);
          this.logger.info("no acknowledgement on the session; checking it now", { target: this.options.name, session: session.id, waitedMs: waited });
          void this.check(slot);
          continue;
        }
      }
      const due = session.checkAlive ? (session.quietForMs ?? 0) >= quietLimit : now - slot.lastProbeAt >= probeEvery;
      if (due) void this.check(slot);
    }
  }

  /** Checks every session now (after the machine slept, say). */
  checkAll(): void {
    for (const slot of this.slots) void this.check(slot);
  }

  private startWakeWatch(): void {
    this.lastBeat = this.clock.now();
    this.wakeTimer = this.clock.setTimeout(() => this.beat(), this.options.wakeCheckIntervalMs ?? 5_000);
  }

  private beat(): void {
    const interval = this.options.wakeCheckIntervalMs ?? 5_000;
    const now = this.clock.now();
    this.clock.clearTimeout(this.wakeTimer);
    this.wakeTimer = undefined;
    if (this.slept(now)) {
      this.logger.info("clock jumped (the machine slept?); checking sessions", { target: this.options.name, gapMs: now - this.lastBeat });
      for (const slot of this.slots) if (slot.session) this.uncheckedAfterSleep.add(slot.session);
      for (const session of this.draining.keys()) this.uncheckedAfterSleep.add(session);
      this.checkAll();
    } else {
      this.checkDue();
    }
    this.lastBeat = now;
    if (!this.stopped) this.wakeTimer = this.clock.setTimeout(() => this.beat(), interval);
  }

  private slept(now: number): boolean {
    return now - this.lastBeat > (this.options.wakeCheckIntervalMs ?? 5_000) + (this.options.wakeThresholdMs ?? 15_000);
  }

  /** A client arrived: if the machine slept since the last beat, run the beat now so its sessions get checked first. */
  private noticeWake(): void {
    if (!this.stopped && this.slept(this.clock.now())) this.beat();
  }

  // ---- state ----

  private updateState(): void {
    const next = this.computeState();
    // Every session up and reaching the database: an earlier failure is over (a warning alone may keep it degraded).
    if (next === "ready" || (next === "degraded" && this.slots.every((slot) => slot.session && !slot.session.ended && !slot.destinationProblem))) this.lastError = null;
    if (next !== this.stateValue) {
      this.stateValue = next;
      this.stateSince = this.clock.now();
      this.logger.info("tunnel state", { target: this.options.name, state: next, error: this.lastError?.message });
      this.emit("state", this.status());
    }
    this.emit("change");
  }

  private computeState(): TunnelState {
    if (this.stopped || !this.active) return "idle";
    const up = this.slots.filter((s) => s.session && !s.session.ended).length;
    const impaired = this.slots.some((s) => s.session && (s.destinationProblem || this.agentWarnings.has(s.session.instanceId)));
    if (up === this.slots.length && !impaired) return "ready";
    if (up > 0) return "degraded";
    // Still retrying with backoff (and at once when a client arrives): reconnecting, never failed.
    return this.everReady || this.failures >= (this.options.retryingAfter ?? 3) ? "reconnecting" : "connecting";
  }

  private nextChange(signal: AbortSignal, timeoutMs: number): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        this.off("change", done);
        signal.removeEventListener("abort", done);
        this.clock.clearTimeout(timer);
        resolve();
      };
      const timer = this.clock.setTimeout(done, timeoutMs);
      this.on("change", done);
      signal.addEventListener("abort", done, { once: true });
    });
  }
}

/** Agents at or below 3.0.196.0 do not multiplex: one connection per session, and tools that open several break. */
export function oldAgentWarning(instanceId: string, agentVersion: string): TunnelProblem | undefined {
  if (agentSupportsMultiplexing(agentVersion)) return undefined;
  return {
    message: `the SSM agent on ${instanceId} is version ${agentVersion}, too old to multiplex (3.0.196.0 or older): every connection needs its own session, and tools that open several connections at once break`,
    fix: `update the SSM agent on ${instanceId} (\`aws ssm send-command --document-name AWS-UpdateSSMAgent --targets Key=InstanceIds,Values=${instanceId}\`)`,
  };
}
