import { connect } from "node:net";
import type { Socket } from "node:net";
import { timingSafeEqual } from "node:crypto";
import type { WebSocket } from "ws";
import {
  agentSupportsKeepAliveOff,
  agentSupportsMultiplexing,
  ActionStatus,
  clientSupportsKeepAliveOff,
  clientSupportsMultiplexing,
  decodeFlag,
  decodeHandshakeResponse,
  encodeChannelClosedMessage,
  encodeFlag,
  encodeHandshakeComplete,
  encodeHandshakeRequest,
  FlagValue,
  MessageFlags,
  PayloadType,
  ReliableChannel,
  RESEND_CHECK_INTERVAL_MS,
  STREAM_DATA_PAYLOAD_SIZE,
} from "@rdsd/ssm-protocol";
import type { ClientMessage, OpenDataChannelRequest, PortSessionProperties } from "@rdsd/ssm-protocol";
import type { Destination } from "./destinations.js";
import { mergeFaults } from "./faults.js";
import type { FaultSettings } from "./faults.js";
import { MultiplexedForwarder, SingleConnectionForwarder } from "./port-forwarding.js";
import type { Forwarder, ForwarderHost } from "./port-forwarding.js";

export type SessionState = "Pending" | "Connected" | "Disconnected" | "Terminated";

/** A snapshot of one session, for tests and the admin API. */
/** Who made an API call: the verified access key and its account. */
export interface Caller {
  account: string;
  accessKeyId: string;
}

export interface SessionInfo {
  sessionId: string;
  /** The account whose key signed StartSession: only it may resume or terminate the session. */
  account: string;
  /** The access key id that signed StartSession, as the emulator received it. */
  startedBy: string;
  instanceId: string;
  documentName: string;
  /** The document's parameters as the handshake carries them. */
  properties: PortSessionProperties;
  /** The local address the agent dials (resolved once, at StartSession), or null when the name does not resolve. */
  destination: Destination | null;
  state: SessionState;
  /** Why it ended (the channel_closed Output, or an internal reason). */
  endReason: string | null;
  mode: "multiplexed" | "single" | null;
  /** The agent's smux keep-alive (on for clients at or below 1.2.331.0); null before the handshake. */
  smuxKeepAlive: boolean | null;
  clientVersion: string | null;
  agentVersion: string;
  /** Websocket connections accepted so far (2 or more means the client resumed). */
  connections: number;
  openDestinationConnections: number;
  bytesToClient: number;
  bytesFromClient: number;
  retransmissions: number;
  badMessages: number;
  faults: FaultSettings;
  startedAt: string;
}

export interface SessionContext {
  agentVersion: string;
  pacing: boolean;
  handshakeTimeoutMs: number;
  instanceFaults(): FaultSettings;
  instanceOnline(): boolean;
  log(line: string): void;
  onEnded(info: SessionInfo): void;
}

/** Outgoing bytes beyond which forwarders are asked to wait. */
const QUEUE_HIGH_WATER = 1 << 20;
const QUEUE_LOW_WATER = 256 << 10;
/** Largest payload per message when pacing is off. */
const UNPACED_PAYLOAD_SIZE = 32 << 10;
/** Unacknowledged messages the agent keeps at most (as the official code's buffer capacity). */
const MAX_OUTSTANDING = 10_000;
const MAX_WS_BUFFERED = 8 << 20;
const WS_PING_INTERVAL_MS = 54_000;

interface QueuedPayload {
  payloadType: number;
  data: Buffer;
  flags: number;
}

/** The agent side of one Session Manager session: data channel, handshake, port forwarding, faults. */
export class AgentSession {
  readonly startedAt = new Date();
  private token: string;
  private clientId: string | undefined;
  private clientVersion: string | undefined;
  private state: SessionState = "Pending";
  private endReason: string | null = null;
  private readonly channel = new ReliableChannel({ role: "agent" });
  private ws: WebSocket | undefined;
  private connections = 0;
  private handshake: "none" | "requested" | "complete" = "none";
  private handshakeSentAt = 0;
  private forwarder: Forwarder | undefined;
  private faults: FaultSettings = {};
  private readonly queue: QueuedPayload[] = [];
  private queuedBytes = 0;
  private queueWasFull = false;
  private pumpScheduled = false;
  private pacingTimer: NodeJS.Timeout | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private readonly resendTimer: NodeJS.Timeout;
  private readonly handshakeTimer: NodeJS.Timeout;
  private stats = { bytesToClient: 0, bytesFromClient: 0, retransmissions: 0, badMessages: 0 };

  constructor(
    readonly owner: Caller,
    readonly sessionId: string,
    readonly instanceId: string,
    readonly documentName: string,
    readonly properties: PortSessionProperties,
    private readonly destination: Destination | undefined,
    token: string,
    private readonly context: SessionContext,
  ) {
    this.token = token;
    this.resendTimer = setInterval(() => this.resendOverdue(), RESEND_CHECK_INTERVAL_MS);
    this.resendTimer.unref();
    // The agent gives up when the client has not completed the handshake in time.
    this.handshakeTimer = setTimeout(() => {
      if (this.handshake !== "complete") this.terminate("", "handshake not completed in time");
    }, context.handshakeTimeoutMs);
    this.handshakeTimer.unref();
  }

  get isTerminated(): boolean {
    return this.state === "Terminated";
  }

  /** ResumeSession: a new token replaces the old one. */
  renewToken(token: string): void {
    this.token = token;
  }

  tokenMatches(candidate: string): boolean {
    const a = Buffer.from(candidate);
    const b = Buffer.from(this.token);
    return a.length === b.length && timingSafeEqual(a, b);
  }

  setFaults(patch: FaultSettings): void {
    this.faults = { ...this.faults, ...patch };
    this.kick();
  }

  clearFaults(): void {
    this.faults = {};
    this.kick();
  }

  /** Something that blocked sending may have changed (faults lifted, instance back online). */
  kick(): void {
    this.schedulePump();
  }

  info(): SessionInfo {
    return {
      sessionId: this.sessionId,
      account: this.owner.account,
      startedBy: this.owner.accessKeyId,
      instanceId: this.instanceId,
      documentName: this.documentName,
      properties: this.properties,
      destination: this.destination ?? null,
      state: this.state,
      endReason: this.endReason,
      mode: this.forwarder?.mode ?? null,
      smuxKeepAlive: this.forwarder?.keepAlive ?? null,
      clientVersion: this.clientVersion ?? null,
      agentVersion: this.context.agentVersion,
      connections: this.connections,
      openDestinationConnections: this.forwarder?.openConnections ?? 0,
      ...this.stats,
      faults: { ...this.faults },
      startedAt: this.startedAt.toISOString(),
    };
  }

  /**
   * A websocket that presented this session's token. Returns an error text when it must be refused
   * (the caller closes it); otherwise the session owns the socket.
   */
  attach(ws: WebSocket, open: OpenDataChannelRequest): string | undefined {
    if (this.state === "Terminated") return "session is terminated";
    if (this.clientId === undefined) {
      this.clientId = open.ClientId;
      this.clientVersion = open.ClientVersion || undefined;
    } else if (open.ClientId !== this.clientId) {
      return "ClientId does not match the session's client";
    }
    const previous = this.ws;
    this.ws = ws;
    previous?.terminate();
    this.connections++;
    this.state = "Connected";
    const ping = setInterval(() => ws.ping(), WS_PING_INTERVAL_MS);
    ping.unref();
    ws.on("message", (data: Buffer, isBinary: boolean) => {
      if (isBinary) this.onFrame(data);
    });
    ws.on("close", () => {
      clearInterval(ping);
      if (this.ws !== ws) return;
      this.ws = undefined;
      if (this.state === "Connected") this.state = "Disconnected";
    });
    ws.on("error", () => {});
    if (this.handshake === "none") {
      this.handshake = "requested";
      this.handshakeSentAt = performance.now();
      this.enqueue(PayloadType.HandshakeRequest, this.handshakeRequest(), MessageFlags.Syn);
    } else {
      // Resume: same sequence numbers, no new handshake, resend what was not acknowledged.
      for (const bytes of this.channel.resendAll(Date.now())) this.transmit(bytes);
    }
    this.schedulePump();
    return undefined;
  }

  /** Fault: the websocket drops (abruptly); the session waits for a resume. */
  dropWebSocket(): boolean {
    const ws = this.ws;
    if (!ws) return false;
    ws.terminate();
    this.ws = undefined;
    if (this.state === "Connected") this.state = "Disconnected";
    return true;
  }

  /**
   * Ends the session. With `output` defined, the client first gets channel_closed carrying it;
   * `reason` is what the session list shows.
   */
  terminate(output: string | undefined, reason = output ?? "terminated"): void {
    if (this.state === "Terminated") return;
    this.state = "Terminated";
    this.endReason = reason;
    clearInterval(this.resendTimer);
    clearTimeout(this.handshakeTimer);
    clearTimeout(this.pacingTimer);
    clearTimeout(this.retryTimer);
    this.queue.length = 0;
    this.queuedBytes = 0;
    this.forwarder?.close();
    const ws = this.ws;
    this.ws = undefined;
    this.context.onEnded(this.info());
    if (!ws) return;
    if (output !== undefined && ws.readyState === ws.OPEN) {
      const closed = encodeChannelClosedMessage({ sessionId: this.sessionId, destinationId: this.instanceId, output }, Date.now());
      const delay = this.effectiveFaults().latencyMs;
      const send = () => ws.send(closed, () => ws.close(1000));
      if (delay > 0) setTimeout(send, delay);
      else send();
    } else {
      ws.close(1000);
    }
  }

  /** How long a websocket for this session waits for its upgrade to be answered (the channelAcceptDelayMs fault). */
  get channelAcceptDelayMs(): number {
    return this.effectiveFaults().channelAcceptDelayMs;
  }

  private effectiveFaults() {
    const merged = mergeFaults(this.faults, this.context.instanceFaults());
    if (!this.context.instanceOnline()) merged.blackHole = true;
    return merged;
  }

  private handshakeRequest(): Buffer {
    return encodeHandshakeRequest({
      AgentVersion: this.context.agentVersion,
      RequestedClientActions: [
        { ActionType: "SessionType", ActionParameters: { SessionType: "Port", Properties: this.properties } },
      ],
    });
  }

  // ---- receiving ----

  private onFrame(data: Buffer): void {
    const delay = this.effectiveFaults().latencyMs;
    if (delay > 0) setTimeout(() => this.processFrame(data), delay);
    else this.processFrame(data);
  }

  private processFrame(data: Buffer): void {
    if (this.state === "Terminated") return;
    const faults = this.effectiveFaults();
    if (faults.blackHole) return;
    const result = this.channel.receive(data, Date.now());
    if (result.error) {
      this.stats.badMessages++;
      this.context.log(`session ${this.sessionId}: dropped a bad message: ${result.error.message}`);
      return;
    }
    if (!faults.stopAcknowledging) for (const reply of result.replies) this.transmit(reply);
    if (result.acknowledged.length > 0) this.schedulePump();
    for (const message of result.delivered) this.onDelivered(message);
  }

  private onDelivered(message: ClientMessage): void {
    switch (message.payloadType) {
      case PayloadType.HandshakeResponse:
        this.onHandshakeResponse(message.payload);
        return;
      case PayloadType.Output:
        this.stats.bytesFromClient += message.payload.length;
        if (this.handshake === "complete") this.forwarder?.fromClient(message.payload);
        return;
      case PayloadType.Flag:
        this.onFlag(message.payload);
        return;
      default:
        return; // Size and the like mean nothing to a port session.
    }
  }

  private onHandshakeResponse(payload: Buffer): void {
    if (this.handshake !== "requested") return;
    let clientVersion: string;
    let sessionTypeOk: boolean;
    try {
      const response = decodeHandshakeResponse(payload);
      clientVersion = response.ClientVersion;
      sessionTypeOk = response.ProcessedClientActions.some(
        (a) => a.ActionType === "SessionType" && a.ActionStatus === ActionStatus.Success,
      );
    } catch (err) {
      this.terminate("", `bad HandshakeResponse: ${(err as Error).message}`);
      return;
    }
    if (!sessionTypeOk) {
      this.terminate("", "the client did not accept the session type");
      return;
    }
    this.clientVersion = clientVersion;
    this.handshake = "complete";
    clearTimeout(this.handshakeTimer);
    // Acknowledgement of the response went out first (above); now HandshakeComplete.
    const elapsedNs = Math.round((performance.now() - this.handshakeSentAt) * 1e6);
    this.enqueue(PayloadType.HandshakeComplete, encodeHandshakeComplete({ HandshakeTimeToComplete: elapsedNs, CustomerMessage: "" }));
    this.forwarder = this.createForwarder(clientVersion);
  }

  private createForwarder(clientVersion: string): Forwarder {
    const host: ForwarderHost = {
      sendOutput: (data) => this.enqueue(PayloadType.Output, data),
      sendFlag: (flag) => void this.enqueue(PayloadType.Flag, encodeFlag(flag)),
      dial: () => this.dial(),
      fail: (reason) => this.terminate("", reason),
    };
    const agentVersion = this.context.agentVersion;
    const multiplexed =
      this.properties.type === "LocalPortForwarding" &&
      clientSupportsMultiplexing(clientVersion) &&
      agentSupportsMultiplexing(agentVersion);
    if (!multiplexed) return new SingleConnectionForwarder(host);
    const keepAliveOff = clientSupportsKeepAliveOff(clientVersion) && agentSupportsKeepAliveOff(agentVersion);
    return new MultiplexedForwarder(host, !keepAliveOff);
  }

  private onFlag(payload: Buffer): void {
    let flag: number;
    try {
      flag = decodeFlag(payload);
    } catch {
      this.stats.badMessages++;
      return;
    }
    if (flag === FlagValue.DisconnectToPort) this.forwarder?.disconnect();
    else if (flag === FlagValue.TerminateSession) this.terminate("", "the client sent TerminateSession");
  }

  private dial(): Promise<Socket> {
    const destination = this.destination;
    if (!destination || this.effectiveFaults().destinationUnreachable) {
      return Promise.reject(new Error("destination unreachable"));
    }
    return new Promise((resolve, reject) => {
      const socket = connect({ host: destination.host, port: destination.port });
      socket.setNoDelay(true);
      socket.once("connect", () => {
        socket.off("error", reject);
        resolve(socket);
      });
      socket.once("error", reject);
    });
  }

  // ---- sending ----

  /** Queues a stream payload for the client; false once the queue is past its high-water mark. */
  private enqueue(payloadType: number, data: Buffer, flags: number = MessageFlags.Data): boolean {
    if (this.state === "Terminated") return true;
    this.queue.push({ payloadType, data, flags });
    this.queuedBytes += data.length;
    this.schedulePump();
    if (this.queuedBytes > QUEUE_HIGH_WATER) {
      this.queueWasFull = true;
      return false;
    }
    return true;
  }

  private schedulePump(): void {
    if (this.pumpScheduled || this.pacingTimer || this.state === "Terminated") return;
    this.pumpScheduled = true;
    setImmediate(() => {
      this.pumpScheduled = false;
      this.pump();
    });
  }

  private pump(): void {
    // A pending pacing timer will pump: a second caller now would start a second timer chain and double the rate.
    if (this.pacingTimer) return;
    const pacing = this.context.pacing;
    const maxPayload = pacing ? STREAM_DATA_PAYLOAD_SIZE : UNPACED_PAYLOAD_SIZE;
    while (this.queue.length > 0 && this.state !== "Terminated") {
      const ws = this.ws;
      if (!ws || ws.readyState !== ws.OPEN || this.effectiveFaults().blackHole) return; // resumed by attach() or kick()
      if (this.channel.outstandingCount >= MAX_OUTSTANDING) return; // resumed by an acknowledgement
      if (ws.bufferedAmount > MAX_WS_BUFFERED) {
        this.retryTimer ??= setTimeout(() => {
          this.retryTimer = undefined;
          this.pump();
        }, 2);
        return;
      }
      const item = this.queue[0]!;
      let piece: Buffer;
      if (item.data.length <= maxPayload) {
        piece = item.data;
        this.queue.shift();
      } else {
        piece = item.data.subarray(0, maxPayload);
        item.data = item.data.subarray(maxPayload);
      }
      this.queuedBytes -= piece.length;
      if (item.payloadType === PayloadType.Output) this.stats.bytesToClient += piece.length;
      this.transmit(this.channel.send(item.payloadType, piece, Date.now(), item.flags));
      if (this.queueWasFull && this.queuedBytes < QUEUE_LOW_WATER) {
        this.queueWasFull = false;
        this.forwarder?.outputDrained();
      }
      if (pacing) {
        // The real agent pauses 1 ms after each message of at most 1024 bytes. One queue and one timer per data
        // channel: every smux stream of the session shares this budget (~0.8 MB/s), as on a real agent.
        this.pacingTimer = setTimeout(() => {
          this.pacingTimer = undefined;
          this.pump();
        }, 1);
        return;
      }
    }
  }

  private resendOverdue(): void {
    const ws = this.ws;
    if (!ws || ws.readyState !== ws.OPEN || this.effectiveFaults().blackHole) return;
    for (const bytes of this.channel.tick(Date.now())) {
      this.stats.retransmissions++;
      this.transmit(bytes);
    }
  }

  private transmit(bytes: Buffer): void {
    const delay = this.effectiveFaults().latencyMs;
    if (delay > 0) {
      setTimeout(() => this.write(bytes), delay);
      return;
    }
    this.write(bytes);
  }

  private write(bytes: Buffer): void {
    const ws = this.ws;
    if (ws && ws.readyState === ws.OPEN) ws.send(bytes, { binary: true });
  }
}
