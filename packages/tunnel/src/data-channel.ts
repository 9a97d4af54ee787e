import { EventEmitter } from "node:events";
import WebSocket from "ws";
import {
  ActionStatus,
  agentSupportsKeepAliveOff,
  agentSupportsMultiplexing,
  agentSupportsTerminateSessionFlag,
  decodeChannelClosedPayload,
  decodeFlag,
  decodeHandshakeRequest,
  encodeFlag,
  encodeHandshakeResponse,
  encodeOpenDataChannel,
  PayloadType,
  randomUuid,
  ReliableChannel,
  RESEND_CHECK_INTERVAL_MS,
  STREAM_DATA_PAYLOAD_SIZE,
} from "@rdsd/ssm-protocol";
import type { ClientMessage, HandshakeRequestPayload, ProcessedClientAction } from "@rdsd/ssm-protocol";
import { Backoff } from "./backoff.js";
import { systemClock } from "./clock.js";
import type { Clock, TimerHandle } from "./clock.js";
import { problemOf, scrub, tunnelError } from "./errors.js";
import type { TunnelProblem } from "./errors.js";
import { silentLogger } from "./logger.js";
import type { TunnelLogger } from "./logger.js";
import type { SessionCredentials } from "./ssm-api.js";

/**
 * The version rdsd reports. Above 1.2.331.0 so the agent turns its smux keep-alive off exactly when
 * we do (agent above 3.1.1511.0), and at least 1.1.70 so the agent multiplexes.
 */
export const CLIENT_VERSION = "1.2.707.0";

/** What the handshake settled. */
export interface HandshakeResult {
  agentVersion: string;
  /** smux streams (true) or one raw connection per session (old agents). */
  multiplexed: boolean;
  /** Both sides keep smux keep-alive off (agent above 3.1.1511.0). */
  keepAliveOff: boolean;
  /** The agent understands Flag TerminateSession. */
  terminateFlag: boolean;
}

/** Why a data channel ended. */
export type DataChannelEnd =
  | { kind: "channel-closed"; problem: TunnelProblem }
  | { kind: "lost"; problem: TunnelProblem }
  | { kind: "stopped" };

export interface DataChannelOptions {
  /** From StartSession. The token is a secret: it goes into the OpenDataChannel frame and nowhere else. */
  session: SessionCredentials;
  /** One per rdsd process; the same on every reconnect. */
  clientId: string;
  clientVersion?: string;
  /** New token and URL after a drop (ssm:ResumeSession). */
  resume: (signal: AbortSignal) => Promise<SessionCredentials>;
  clock?: Clock;
  logger?: TunnelLogger;
  /** The agent gives up after 15 s; so do we. */
  handshakeTimeoutMs?: number;
  /** Unacknowledged data this long means the websocket is dead even if it looks open: reconnect. */
  ackStallTimeoutMs?: number;
  /** How long to keep trying ResumeSession after a drop before the session is declared lost. */
  resumeTimeoutMs?: number;
  /** Payload bytes per input_stream_data message (the official client's 1024). */
  maxPayloadSize?: number;
  /** Unacknowledged messages beyond which write() asks the caller to wait for "drain". */
  sendWindow?: number;
  /**
   * checkAlive() declares the path dead when no acknowledgement came this long after its message (default:
   * four retransmission timeouts, at least 2 s; the timeout follows the measured round trip, capped at 1 s).
   */
  livenessTimeoutMs?: number;
}

type State = "new" | "connecting" | "open" | "resuming" | "ended";

const WS_PING_INTERVAL_MS = 5 * 60_000; // as the official client
const MAX_RESUMES_WITHOUT_TRAFFIC = 5;
/** checkAlive()'s shortest deadline: a retransmission or two fit in it even on a fast path. */
const MIN_LIVENESS_TIMEOUT_MS = 2_000;
const OPEN_CANCELLED: TunnelProblem = { message: "opening the SSM data channel was cancelled", fix: "" };

/**
 * The client side of one SSM data channel: websocket, OpenDataChannel, handshake, the reliable
 * layer (acks, retransmission, ordering), resume after a drop, channel_closed.
 * Events: "data" (Output payload bytes, in order, once), "flag" (agent flag), "drain", "resumed", "end".
 */
export class DataChannel extends EventEmitter<{
  data: [Buffer];
  flag: [number];
  drain: [];
  resumed: [];
  end: [DataChannelEnd];
}> {
  readonly sessionId: string;
  private readonly clock: Clock;
  private readonly logger: TunnelLogger;
  private readonly reliable = new ReliableChannel({ role: "client" });
  private readonly maxPayload: number;
  private readonly window: number;
  private readonly clientVersion: string;
  private state: State = "new";
  private ws: WebSocket | undefined;
  private credentials: SessionCredentials;
  private handshake: HandshakeResult | undefined;
  private handshakeWaiter: { resolve: (r: HandshakeResult) => void; reject: (e: Error) => void } | undefined;
  /** Runs only while something we sent is unacknowledged: an idle channel sets no timer but the websocket ping. */
  private ticker: TimerHandle | undefined;
  private pinger: TimerHandle | undefined;
  private stallSince: number | undefined;
  /** When the agent was last heard from (any valid message): the supervisor checks a channel that has gone quiet. */
  private lastHeardAt: number;
  /** checkAlive() calls waiting for the next acknowledgement. */
  private readonly aliveWaiters = new Set<() => void>();
  private blocked = false;
  private readingPaused = false;
  private resumesWithoutTraffic = 0;
  private ackedSinceResume = true;
  private readonly stopController = new AbortController();
  /** Counters for status and tests. */
  readonly stats = { resumes: 0, retransmissions: 0, badMessages: 0, bytesIn: 0, bytesOut: 0 };

  constructor(private readonly options: DataChannelOptions) {
    super();
    this.sessionId = options.session.sessionId;
    this.credentials = options.session;
    this.clock = options.clock ?? systemClock;
    this.logger = options.logger ?? silentLogger;
    this.maxPayload = options.maxPayloadSize ?? STREAM_DATA_PAYLOAD_SIZE;
    this.window = options.sendWindow ?? 4096;
    this.clientVersion = options.clientVersion ?? CLIENT_VERSION;
    this.lastHeardAt = this.clock.now();
  }

  get handshakeResult(): HandshakeResult | undefined {
    return this.handshake;
  }

  get ended(): boolean {
    return this.state === "ended";
  }

  /** How long data we sent has waited without any acknowledgement (0 when nothing is outstanding, or not open). */
  get unacknowledgedForMs(): number {
    if (this.state !== "open" || this.stallSince === undefined) return 0;
    return Math.max(0, this.clock.now() - this.stallSince);
  }

  /** How long the agent has sent nothing (no data, no acknowledgement). */
  get quietForMs(): number {
    return Math.max(0, this.clock.now() - this.lastHeardAt);
  }

  /** Unacknowledged messages we sent. */
  get outstanding(): number {
    return this.reliable.outstandingCount;
  }

  get retransmissionTimeoutMs(): number {
    return this.reliable.retransmissionTimeoutMs;
  }

  /** Opens the websocket and completes the handshake. Rejects with a ProxyError. */
  async open(signal?: AbortSignal): Promise<HandshakeResult> {
    if (this.state !== "new") throw new Error("DataChannel.open called twice");
    if (signal?.aborted) throw tunnelError(OPEN_CANCELLED);
    this.state = "connecting";
    const timeoutMs = this.options.handshakeTimeoutMs ?? 15_000;
    const handshake = new Promise<HandshakeResult>((resolve, reject) => {
      this.handshakeWaiter = { resolve, reject };
    });
    handshake.catch(() => {}); // observed below unless the websocket fails first
    const timer = this.clock.setTimeout(
      () => this.failOpen({ message: `the SSM agent did not complete the handshake within ${timeoutMs / 1000} s (session ${this.sessionId})`, fix: "check the bastion's SSM agent (it may be overloaded or too old); rdsd retries by itself" }),
      timeoutMs,
    );
    const onAbort = () => this.failOpen(OPEN_CANCELLED);
    signal?.addEventListener("abort", onAbort, { once: true });
    try {
      await this.connectWebSocket(this.credentials);
      this.startPinger();
      return await handshake;
    } catch (err) {
      this.failOpen(problemOf(err, "opening the SSM data channel"));
      throw err;
    } finally {
      this.clock.clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
    }
  }

  /**
   * Sends bytes to the agent as Output messages. Returns false when the unacknowledged window is
   * full: wait for "drain" before writing more. Nothing written is ever lost to a websocket drop.
   */
  write(chunk: Buffer): boolean {
    if (this.state === "ended") return false;
    for (let offset = 0; offset < chunk.length; offset += this.maxPayload) {
      this.sendStream(PayloadType.Output, chunk.subarray(offset, Math.min(offset + this.maxPayload, chunk.length)));
    }
    this.stats.bytesOut += chunk.length;
    if (this.reliable.outstandingCount >= this.window) this.blocked = true;
    return !this.blocked;
  }

  /** Sends a Flag message (DisconnectToPort, TerminateSession). */
  sendFlag(flag: number): void {
    if (this.state === "ended") return;
    this.sendStream(PayloadType.Flag, encodeFlag(flag));
  }

  /**
   * Liveness without the destination: sends `payload` (a smux NOP frame) as one input_stream_data message, which
   * the agent acknowledges on receipt whatever it carries. Resolves at the next acknowledgement; rejects with a
   * ProxyError when none comes within the deadline (the path is dead) or the channel ends. While the channel is
   * resuming the wait goes on: the resume has its own deadline and ends the channel when it fails.
   */
  checkAlive(payload: Buffer): Promise<void> {
    if (this.state === "ended" || this.state === "new") return Promise.reject(tunnelError({ message: `SSM session ${this.sessionId} is closed`, fix: "rdsd opens a new session by itself" }));
    const timeoutMs = this.options.livenessTimeoutMs ?? Math.max(MIN_LIVENESS_TIMEOUT_MS, 4 * this.reliable.retransmissionTimeoutMs);
    return new Promise<void>((resolve, reject) => {
      let timer: TimerHandle | undefined;
      const done = (error?: Error) => {
        this.clock.clearTimeout(timer);
        this.aliveWaiters.delete(onAck);
        this.off("end", onEnd);
        if (error) reject(error);
        else resolve();
      };
      const onAck = () => done();
      const onEnd = () => done(tunnelError({ message: `SSM session ${this.sessionId} ended during a liveness check`, fix: "rdsd opens a new session by itself" }));
      const arm = () => {
        timer = this.clock.setTimeout(() => {
          if (this.state === "resuming") return arm();
          done(tunnelError({ message: `the SSM agent did not acknowledge a keep-alive within ${timeoutMs} ms (session ${this.sessionId})`, fix: "rdsd replaces the session by itself; if this repeats, check this machine's network and the bastion" }));
        }, timeoutMs);
      };
      this.aliveWaiters.add(onAck);
      this.once("end", onEnd);
      arm();
      this.sendStream(PayloadType.Output, payload);
    });
  }

  /** Stops reading the websocket (a slow local reader); the agent is held back by TCP. */
  pauseReading(): void {
    this.readingPaused = true;
    this.ws?.pause();
  }

  resumeReading(): void {
    this.readingPaused = false;
    this.ws?.resume();
  }

  /** Closes the websocket; sends Flag TerminateSession first when `terminate` and the agent understands it. */
  async close(options: { terminate?: boolean } = {}): Promise<void> {
    if (this.state === "ended") return;
    const ws = this.ws;
    if (options.terminate && this.handshake?.terminateFlag && this.state === "open" && ws?.readyState === WebSocket.OPEN) {
      const flag = this.reliable.send(PayloadType.Flag, encodeFlag(2 /* TerminateSession */), this.clock.now());
      // Let the flag reach the socket before closing (bounded: a dead socket must not hold stop()).
      await new Promise<void>((resolve) => {
        const t = this.clock.setTimeout(resolve, 500);
        ws.send(flag, { binary: true }, () => {
          this.clock.clearTimeout(t);
          resolve();
        });
      });
    }
    this.end({ kind: "stopped" });
  }

  private sendStream(payloadType: number, payload: Buffer): void {
    const now = this.clock.now();
    if (this.reliable.outstandingCount === 0) this.stallSince = now;
    // Recorded as outstanding before the write: an acknowledgement racing the write is never missed.
    const bytes = this.reliable.send(payloadType, payload, now);
    if (this.state === "open" || this.state === "connecting") this.ws?.send(bytes, { binary: true });
    // While resuming, the message waits in the outstanding set and goes out with resendAll.
    this.startTicker();
  }

  private connectWebSocket(credentials: SessionCredentials): Promise<void> {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(credentials.streamUrl, { perMessageDeflate: false, maxPayload: 64 << 20, handshakeTimeout: 15_000 });
      this.ws = ws;
      // The channel can end while this websocket is still connecting (the open cancelled or timed out, close()):
      // end() takes the websocket's listeners off, so the end itself settles this connect.
      const onEnd = (reason: DataChannelEnd) => reject(tunnelError(reason.kind === "stopped" ? { message: `the data channel for session ${this.sessionId} was closed while connecting`, fix: "" } : reason.problem));
      this.once("end", onEnd);
      const onError = (err: Error) => {
        this.off("end", onEnd);
        ws.removeAllListeners();
        ws.on("error", () => {});
        ws.terminate();
        reject(
          tunnelError({
            message: `cannot open the SSM data channel for session ${this.sessionId}: ${scrub(err.message, [credentials.tokenValue])}`,
            fix: "check this machine's access to ssmmessages (HTTPS, proxies); rdsd retries by itself",
          }),
        );
      };
      ws.once("error", onError);
      ws.once("open", () => {
        this.off("end", onEnd);
        ws.off("error", onError);
        ws.on("error", (err) => this.logger.debug("data channel websocket error", { session: this.sessionId, error: scrub(err.message, [credentials.tokenValue]) }));
        ws.on("message", (data, isBinary) => this.onMessage(ws, data as Buffer, isBinary));
        ws.on("close", (code) => this.onClose(ws, code));
        if (this.readingPaused) ws.pause();
        ws.send(
          encodeOpenDataChannel({
            MessageSchemaVersion: "1.0",
            RequestId: randomUuid(),
            TokenValue: credentials.tokenValue,
            ClientId: this.options.clientId,
            ClientVersion: this.clientVersion,
          }),
        );
        ws.ping("keepalive");
        resolve();
      });
    });
  }

  private onMessage(ws: WebSocket, data: Buffer, isBinary: boolean): void {
    if (ws !== this.ws || this.state === "ended") return;
    if (!isBinary) return; // the service only sends binary frames after OpenDataChannel
    const now = this.clock.now();
    const result = this.reliable.receive(data, now);
    if (result.error) {
      this.stats.badMessages++;
      this.logger.warn("ignored a malformed data-channel message", { session: this.sessionId, error: result.error.message });
      return;
    }
    this.resumesWithoutTraffic = 0;
    this.lastHeardAt = now;
    for (const reply of result.replies) ws.send(reply, { binary: true });
    if (result.acknowledged.length > 0) {
      this.ackedSinceResume = true;
      this.stallSince = this.reliable.outstandingCount > 0 ? now : undefined;
      if (this.reliable.outstandingCount === 0) this.stopTicker();
      for (const waiter of [...this.aliveWaiters]) waiter();
      if (this.blocked && this.reliable.outstandingCount <= this.window / 2) {
        this.blocked = false;
        this.emit("drain");
      }
    }
    for (const message of result.delivered) {
      this.deliver(message);
      if (this.ended) return;
    }
    for (const control of result.control) {
      if (control.messageType === "channel_closed") this.onChannelClosed(control);
    }
  }

  private deliver(message: ClientMessage): void {
    switch (message.payloadType) {
      case PayloadType.Output:
        this.stats.bytesIn += message.payload.length;
        if (message.payload.length > 0) this.emit("data", message.payload);
        return;
      case PayloadType.HandshakeRequest:
        this.onHandshakeRequest(message.payload);
        return;
      case PayloadType.HandshakeComplete:
        this.onHandshakeComplete();
        return;
      case PayloadType.Flag: {
        let flag: number;
        try {
          flag = decodeFlag(message.payload);
        } catch {
          this.stats.badMessages++;
          return;
        }
        this.emit("flag", flag);
        return;
      }
      default:
        // StdErr, ExitCode, Size...: not part of port sessions.
        this.logger.debug("ignored a data-channel payload", { session: this.sessionId, payloadType: message.payloadType });
    }
  }

  private pendingHandshake: HandshakeResult | undefined;

  private onHandshakeRequest(payload: Buffer): void {
    let request: HandshakeRequestPayload;
    try {
      request = decodeHandshakeRequest(payload);
    } catch (err) {
      this.failOpen({ message: `the SSM agent sent an invalid handshake: ${(err as Error).message}`, fix: "check the bastion's SSM agent version" });
      return;
    }
    const processed: ProcessedClientAction[] = [];
    let portType: string | undefined;
    for (const action of request.RequestedClientActions) {
      if (action.ActionType === "SessionType") {
        const params = action.ActionParameters as { SessionType?: unknown; Properties?: { type?: unknown } } | null;
        portType = typeof params?.Properties?.type === "string" ? params.Properties.type : "";
        const ok = params?.SessionType === "Port";
        processed.push({ ActionType: action.ActionType, ActionStatus: ok ? ActionStatus.Success : ActionStatus.Unsupported, ActionResult: null, Error: ok ? "" : "rdsd only opens port sessions" });
      } else {
        // KMS encryption is never requested for port-forwarding documents; anything else is refused plainly.
        processed.push({ ActionType: action.ActionType, ActionStatus: ActionStatus.Unsupported, ActionResult: null, Error: `${action.ActionType} is not supported by rdsd` });
      }
    }
    this.pendingHandshake = {
      agentVersion: request.AgentVersion,
      multiplexed: portType === "LocalPortForwarding" && agentSupportsMultiplexing(request.AgentVersion),
      keepAliveOff: agentSupportsKeepAliveOff(request.AgentVersion),
      terminateFlag: agentSupportsTerminateSessionFlag(request.AgentVersion),
    };
    this.sendStream(
      PayloadType.HandshakeResponse,
      encodeHandshakeResponse({ ClientVersion: this.clientVersion, ProcessedClientActions: processed, Errors: null }),
    );
  }

  private onHandshakeComplete(): void {
    if (this.handshake || !this.pendingHandshake) return;
    this.handshake = this.pendingHandshake;
    this.state = "open";
    this.handshakeWaiter?.resolve(this.handshake);
    this.handshakeWaiter = undefined;
  }

  private onChannelClosed(message: ClientMessage): void {
    let output = "";
    try {
      output = decodeChannelClosedPayload(message.payload).Output;
    } catch {
      // an unreadable reason still ends the session
    }
    const problem: TunnelProblem = {
      message: `AWS closed SSM session ${this.sessionId}${output ? `: ${output.trim()}` : ""}`,
      fix: "rdsd opens a new session by itself; raise the Session Manager idle timeout or maximum session duration if this repeats",
    };
    if (this.state === "connecting") this.failOpen(problem);
    else this.end({ kind: "channel-closed", problem });
  }

  private onClose(ws: WebSocket, code: number): void {
    if (ws !== this.ws || this.state === "ended") return;
    if (this.state === "connecting") {
      this.failOpen({ message: `the SSM service closed the data channel during the handshake (code ${code}, session ${this.sessionId})`, fix: "rdsd retries with a new session by itself" });
      return;
    }
    this.logger.info("data channel dropped; resuming", { session: this.sessionId, code });
    void this.reconnect();
  }

  /** After a drop: ResumeSession, same ClientId, same sequence numbers, resend what is unacknowledged. */
  private async reconnect(): Promise<void> {
    if (this.state !== "open") return;
    this.state = "resuming";
    this.detachWebSocket();
    if (++this.resumesWithoutTraffic > MAX_RESUMES_WITHOUT_TRAFFIC) {
      this.end({ kind: "lost", problem: { message: `SSM session ${this.sessionId} keeps dropping right after each resume`, fix: "rdsd opens a new session by itself" } });
      return;
    }
    const droppedAt = this.clock.now();
    const deadline = droppedAt + (this.options.resumeTimeoutMs ?? 30_000);
    const backoff = new Backoff({ initialMs: 250, maxMs: 5_000 });
    let last: TunnelProblem = { message: `SSM session ${this.sessionId} dropped`, fix: "rdsd opens a new session by itself" };
    while (this.state === "resuming") {
      try {
        const credentials = await this.options.resume(this.stopController.signal);
        if (this.state !== "resuming") return;
        this.credentials = credentials;
        await this.connectWebSocket(credentials);
        if (this.state !== "resuming") return;
        this.state = "open";
        this.stats.resumes++;
        const now = this.clock.now();
        const resend = this.reliable.resendAll(now);
        this.stats.retransmissions += resend.length;
        for (const bytes of resend) this.ws?.send(bytes, { binary: true });
        this.stallSince = this.reliable.outstandingCount > 0 ? now : undefined;
        this.ackedSinceResume = false;
        this.logger.info(`data channel resumed after ${now - droppedAt} ms`, { session: this.sessionId, resent: resend.length });
        this.startTicker();
        this.emit("resumed");
        return;
      } catch (err) {
        last = problemOf(err, `resuming SSM session ${this.sessionId}`);
        this.logger.warn("resume failed", { session: this.sessionId, error: last.message });
      }
      if (this.state !== "resuming") return;
      const wait = backoff.next();
      if (this.clock.now() + wait > deadline) {
        this.end({ kind: "lost", problem: last });
        return;
      }
      await new Promise<void>((resolve) => this.clock.setTimeout(resolve, wait));
    }
  }

  /**
   * The 100 ms resend and stall check, as the official client runs it, but only while something is unacknowledged
   * (started by a send, stopped by the acknowledgement that empties the outstanding set).
   */
  private startTicker(): void {
    if (this.ticker !== undefined || this.state === "ended") return;
    this.ticker = this.clock.setTimeout(() => this.tick(), RESEND_CHECK_INTERVAL_MS);
  }

  private stopTicker(): void {
    this.clock.clearTimeout(this.ticker);
    this.ticker = undefined;
  }

  private tick(): void {
    this.ticker = undefined;
    if (this.state === "ended") return;
    if (this.reliable.outstandingCount === 0) return;
    this.ticker = this.clock.setTimeout(() => this.tick(), RESEND_CHECK_INTERVAL_MS);
    if (this.state !== "open" && this.state !== "connecting") return;
    const now = this.clock.now();
    const ws = this.ws;
    for (const bytes of this.reliable.tick(now)) {
      this.stats.retransmissions++;
      ws?.send(bytes, { binary: true });
    }
    const stallLimit = this.options.ackStallTimeoutMs ?? 20_000;
    if (this.state === "open" && this.stallSince !== undefined && now - this.stallSince > stallLimit) {
      const waitedMs = now - this.stallSince;
      this.stallSince = undefined;
      if (!this.ackedSinceResume) {
        // Resuming already failed to bring acknowledgements back: the agent side is broken, not the websocket.
        this.end({ kind: "lost", problem: { message: `the SSM agent stopped acknowledging data on session ${this.sessionId}`, fix: "rdsd opens a new session by itself; check the bastion's SSM agent if this repeats" } });
        return;
      }
      this.logger.warn("no acknowledgement from the agent; reconnecting", { session: this.sessionId, waitedMs });
      void this.reconnect();
    }
  }

  /** The websocket ping every 5 min (as the official client), one timer per channel. */
  private startPinger(): void {
    const ping = () => {
      if (this.state === "ended") return;
      if (this.state === "open") this.ws?.ping("keepalive");
      this.pinger = this.clock.setTimeout(ping, WS_PING_INTERVAL_MS);
    };
    this.pinger = this.clock.setTimeout(ping, WS_PING_INTERVAL_MS);
  }

  private detachWebSocket(): void {
    const ws = this.ws;
    this.ws = undefined;
    if (!ws) return;
    ws.removeAllListeners();
    ws.on("error", () => {});
    ws.terminate();
  }

  private failOpen(problem: TunnelProblem): void {
    if (this.state !== "connecting") return;
    const waiter = this.handshakeWaiter;
    this.handshakeWaiter = undefined;
    this.end({ kind: "lost", problem });
    waiter?.reject(tunnelError(problem));
  }

  private end(reason: DataChannelEnd): void {
    if (this.state === "ended") return;
    this.state = "ended";
    this.stopController.abort();
    this.stopTicker();
    this.clock.clearTimeout(this.pinger);
    this.detachWebSocket();
    if (this.handshakeWaiter) {
      this.handshakeWaiter.reject(tunnelError(reason.kind === "stopped" ? { message: "the data channel was closed", fix: "" } : reason.problem));
      this.handshakeWaiter = undefined;
    }
    this.emit("end", reason);
  }
}
