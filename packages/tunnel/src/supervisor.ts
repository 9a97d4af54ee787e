import { EventEmitter } from "node:events";
import type { Duplex } from "node:stream";
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

/** The states `rdsd status` shows. */
export type TunnelState = "idle" | "connecting" | "ready" | "degraded" | "reconnecting" | "failed";

/** Where sessions go: a BastionResolver, or anything that picks an instance. */
export interface BastionSource {
  resolve(signal?: AbortSignal): Promise<string>;
  markFailed(instanceId: string): void;
  readonly current: string | undefined;
  describe(): string;
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
  /** Probe every session this often (default 30 s). */
  probeIntervalMs?: number;
  probeTimeoutMs?: number;
  /** Probe each new session before handing it out (default true). */
  probeOnOpen?: boolean;
  /** Replace sessions this old, before AWS's limits end them (default 50 min); the old one drains. */
  sessionMaxAgeMs?: number;
  /** A draining session is closed after this long even with connections on it (default 10 min). */
  drainTimeoutMs?: number;
  /** Opening one session (StartSession + handshake + probe) gives up after this long (default 30 s). */
  openTimeoutMs?: number;
  /** Consecutive failed opens before the state is "failed" (default 3). */
  failAfter?: number;
  /** How often the clock is checked for jumps (default 5 s); a gap over wakeThresholdMs means the machine slept. */
  wakeCheckIntervalMs?: number;
  wakeThresholdMs?: number;
  /**
   * Probe a session at once (at the next clock check) when data sent on it has had no acknowledgement for this
   * long (default 5 s; the agent acknowledges in milliseconds). A black-holed session is found in seconds instead
   * of at the next periodic probe or the data channel's own 20 s stall limit.
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
}

interface Slot {
  index: number;
  session: TunnelSession | undefined;
  openedAt: number;
  opening: AbortController | undefined;
  retryTimer: TimerHandle | undefined;
  probeTimer: TimerHandle | undefined;
  ageTimer: TimerHandle | undefined;
  backoff: Backoff;
  lastReplacedForDestination: number;
}

const MIN_DESTINATION_REPLACE_INTERVAL_MS = 60_000;

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
  private readonly streams = new Set<Duplex>();
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
  /** Slots with a probe in flight: one probe per session at a time. */
  private readonly probing = new Set<Slot>();
  /** When each slot was last probed for a stall: a session that passes keeps its stall without a probe per beat. */
  private readonly stallProbedAt = new Map<Slot, number>();
  private lastBeat = 0;

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
      probeTimer: undefined,
      ageTimer: undefined,
      backoff: new Backoff(options.backoff),
      lastReplacedForDestination: -Infinity,
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
    };
  }

  /**
   * A stream to host:port for one client connection. During a rebuild it waits (up to `waitMs`) for a
   * session; it fails early with the last error once a fresh attempt has failed too. Rejects with a ProxyError.
   */
  async acquire(signal: AbortSignal, waitMs = 15_000): Promise<Duplex> {
    if (this.stopped) throw tunnelError({ message: `the tunnel for ${this.options.name} is stopped`, fix: "start rdsd (or the target) again" });
    this.clock.clearTimeout(this.idleTimer);
    this.idleTimer = undefined;
    if (!this.active) this.activate();
    const deadline = this.clock.now() + waitMs;
    const serialAtStart = this.failureSerial;
    this.kickRetries();
    for (;;) {
      if (signal.aborted) throw tunnelError({ message: "the connection was abandoned while waiting for the tunnel", fix: "" });
      if (this.stopped) throw tunnelError({ message: `the tunnel for ${this.options.name} was stopped`, fix: "start rdsd (or the target) again" });
      const pick = this.pick();
      if (pick) {
        // Count the connection on its session before waiting, so concurrent dials spread out.
        this.load.set(pick.session, (this.load.get(pick.session) ?? 0) + 1);
        try {
          const stream = await pick.session.openStream(signal).finally(() => this.unload(pick.session));
          this.track(stream, pick.session);
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
    try {
      instanceId = await this.options.bastion.resolve(controller.signal);
      session = await this.options.factory.open(instanceId, controller.signal);
      if (controller.signal.aborted) throw new Error("cancelled");
      if (this.options.probeOnOpen !== false && !session.singleUse) await probeSession(session, this.options.probeTimeoutMs ?? 8_000, this.options.host);
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
    this.install(slot, session);
  }

  private install(slot: Slot, session: TunnelSession): void {
    slot.session = session;
    slot.openedAt = this.clock.now();
    slot.backoff.reset();
    this.failures = 0;
    this.everReady = true;
    this.logger.info("tunnel session ready", { target: this.options.name, session: session.id, instance: session.instanceId, slot: slot.index });
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
    session.on("destination-error", (problem) => {
      this.lastError = problem;
      // The agent resolved the database name once, at StartSession: after a failover only a new session sees the new address.
      const now = this.clock.now();
      if (slot.session === session && now - slot.lastReplacedForDestination > MIN_DESTINATION_REPLACE_INTERVAL_MS) {
        slot.lastReplacedForDestination = now;
        this.fill(slot, true);
      }
      this.updateState();
    });
    this.scheduleProbe(slot);
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
    this.clock.clearTimeout(slot.probeTimer);
    this.clock.clearTimeout(slot.ageTimer);
    slot.probeTimer = undefined;
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

  /** The least loaded available session. */
  private pick(): { slot: Slot; session: TunnelSession } | undefined {
    let best: { slot: Slot; session: TunnelSession } | undefined;
    for (const slot of this.slots) {
      const session = slot.session;
      if (!session || !session.available) continue;
      if (!best || (this.load.get(session) ?? 0) < (this.load.get(best.session) ?? 0)) best = { slot, session };
    }
    return best;
  }

  private track(stream: Duplex, session: TunnelSession): void {
    this.streams.add(stream);
    this.load.set(session, (this.load.get(session) ?? 0) + 1);
    stream.once("close", () => {
      this.streams.delete(stream);
      this.unload(session);
      if (this.streams.size === 0 && this.options.mode === "lazy" && this.active && !this.stopped) {
        this.clock.clearTimeout(this.idleTimer);
        this.idleTimer = this.clock.setTimeout(() => {
          this.idleTimer = undefined;
          if (this.streams.size === 0) {
            this.logger.info("tunnel idle; closing its sessions", { target: this.options.name });
            void this.deactivate();
          }
        }, this.options.idleTimeoutMs);
      }
      for (const session of this.draining.keys()) if (session.activeStreams === 0) this.closeLater(session);
    });
  }

  private unload(session: TunnelSession): void {
    const left = (this.load.get(session) ?? 1) - 1;
    if (left > 0) this.load.set(session, left);
    else this.load.delete(session);
  }

  // ---- probes and sleep detection ----

  private scheduleProbe(slot: Slot): void {
    this.clock.clearTimeout(slot.probeTimer);
    slot.probeTimer = this.clock.setTimeout(() => void this.probe(slot), this.options.probeIntervalMs ?? 30_000);
  }

  private async probe(slot: Slot): Promise<void> {
    const session = slot.session;
    if (!session) return;
    slot.probeTimer = undefined;
    if (session.singleUse) return; // a probe would use up its one connection; its connection gets a fresh session anyway
    if (this.probing.has(slot)) return;
    this.probing.add(slot);
    try {
      await probeSession(session, this.options.probeTimeoutMs ?? 8_000, this.options.host);
      if (slot.session === session) this.scheduleProbe(slot);
    } catch (err) {
      if (slot.session !== session) return;
      const problem = problemOf(err, "probe");
      this.logger.warn("tunnel probe failed; replacing the session", { target: this.options.name, session: session.id, error: problem.message });
      this.lastError = problem;
      this.clearSlot(slot);
      this.closeLater(session);
      this.fill(slot);
      this.updateState();
    } finally {
      this.probing.delete(slot);
    }
  }

  /** Probes sessions whose sent data has gone unacknowledged for stallProbeMs. */
  private probeStalled(): void {
    const limit = this.options.stallProbeMs ?? 5_000;
    for (const slot of this.slots) {
      const session = slot.session;
      if (!session || session.singleUse || this.probing.has(slot)) continue;
      const waited = session.unacknowledgedForMs ?? 0;
      if (waited < limit) continue;
      const last = this.stallProbedAt.get(slot);
      if (last !== undefined && this.clock.now() - last < waited) continue; // already probed during this stall
      this.stallProbedAt.set(slot, this.clock.now());
      this.logger.info("no acknowledgement on the session; probing it now", { target: this.options.name, session: session.id, waitedMs: waited });
      this.clock.clearTimeout(slot.probeTimer);
      void this.probe(slot);
    }
  }

  /** Probes every session now (after the machine slept, say). */
  probeAll(): void {
    for (const slot of this.slots) {
      if (slot.session && !slot.session.singleUse) {
        this.clock.clearTimeout(slot.probeTimer);
        void this.probe(slot);
      }
    }
  }

  private startWakeWatch(): void {
    const interval = this.options.wakeCheckIntervalMs ?? 5_000;
    const threshold = this.options.wakeThresholdMs ?? 15_000;
    this.lastBeat = this.clock.now();
    const beat = () => {
      const now = this.clock.now();
      if (now - this.lastBeat > interval + threshold) {
        this.logger.info("clock jumped (the machine slept?); probing sessions", { target: this.options.name, gapMs: now - this.lastBeat });
        this.probeAll();
      } else {
        this.probeStalled();
      }
      this.lastBeat = now;
      if (!this.stopped) this.wakeTimer = this.clock.setTimeout(beat, interval);
    };
    this.wakeTimer = this.clock.setTimeout(beat, interval);
  }

  // ---- state ----

  private updateState(): void {
    const next = this.computeState();
    if (next === "ready") this.lastError = null;
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
    if (up === this.slots.length) return "ready";
    if (up > 0) return "degraded";
    if (this.failures >= (this.options.failAfter ?? 3)) return "failed";
    return this.everReady ? "reconnecting" : "connecting";
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
