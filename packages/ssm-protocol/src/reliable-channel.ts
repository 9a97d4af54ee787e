import { ClientMessageError, decodeClientMessage, encodeClientMessage, MessageType } from "./client-message.js";
import type { ClientMessage } from "./client-message.js";
import { decodeAcknowledgeContent, encodeAcknowledgeMessage } from "./payloads.js";
import { randomUuid } from "./uuid.js";

/**
 * The reliable, sequenced, acknowledged stream layer of the data channel, as a state machine.
 * It does no I/O and reads no clock: callers pass `now` (epoch ms) and write the bytes it returns.
 * Role-neutral: the agent sends output_stream_data and receives input_stream_data; the client the reverse.
 */
export interface ReliableChannelOptions {
  role: "agent" | "client";
  /** Message ids; random v4 UUIDs by default (inject for deterministic tests). */
  newMessageId?: () => string;
  /** Starting retransmission timeout (default 200 ms). */
  initialRetransmissionTimeoutMs?: number;
  /** Cap on the retransmission timeout (default 1000 ms). */
  maxRetransmissionTimeoutMs?: number;
  /** Starting smoothed round-trip time (default 100 ms, as the official client). */
  initialRoundTripTimeMs?: number;
  /** Early (out-of-order) messages kept at most (default 10000); later ones are dropped unacknowledged. */
  incomingBufferCapacity?: number;
}

/** What one received message produced. */
export interface ReceiveResult {
  /** Messages to write back now (acknowledgements), in order, before acting on `delivered`. */
  replies: Buffer[];
  /** Stream messages from the peer, now in sequence order, each exactly once. */
  delivered: ClientMessage[];
  /** Our sequence numbers this message acknowledged. */
  acknowledged: number[];
  /** Service messages outside the sequence: channel_closed, start_publication, pause_publication. */
  control: ClientMessage[];
  /** Set when the bytes were not a valid message; nothing else happened. */
  error?: ClientMessageError;
}

interface Outstanding {
  sequenceNumber: number;
  bytes: Buffer;
  lastSentAt: number;
  resendCount: number;
}

/** RFC 6298-style smoothing with the constants the official client uses. */
const RTT_ALPHA = 1 / 8;
const RTT_BETA = 1 / 4;
const CLOCK_GRANULARITY_MS = 10;

export class ReliableChannel {
  readonly sendType: string;
  readonly receiveType: string;
  private readonly newMessageId: () => string;
  private readonly maxRtoMs: number;
  private readonly incomingCapacity: number;
  private nextSequence = 0;
  private expected = 0;
  private readonly outstanding = new Map<number, Outstanding>();
  private readonly early = new Map<number, ClientMessage>();
  private rttMs: number;
  private rttVarianceMs = 0;
  private rtoMs: number;

  constructor(options: ReliableChannelOptions) {
    this.sendType = options.role === "agent" ? MessageType.OutputStreamData : MessageType.InputStreamData;
    this.receiveType = options.role === "agent" ? MessageType.InputStreamData : MessageType.OutputStreamData;
    this.newMessageId = options.newMessageId ?? randomUuid;
    this.maxRtoMs = options.maxRetransmissionTimeoutMs ?? 1000;
    this.rtoMs = options.initialRetransmissionTimeoutMs ?? 200;
    this.rttMs = options.initialRoundTripTimeMs ?? 100;
    this.incomingCapacity = options.incomingBufferCapacity ?? 10000;
  }

  /** The sequence number the next send() will use. */
  get nextSendSequence(): number {
    return this.nextSequence;
  }

  /** The peer's sequence number we deliver next. */
  get expectedReceiveSequence(): number {
    return this.expected;
  }

  get retransmissionTimeoutMs(): number {
    return this.rtoMs;
  }

  get roundTripTimeMs(): number {
    return this.rttMs;
  }

  /** Sent and not yet acknowledged. */
  get outstandingCount(): number {
    return this.outstanding.size;
  }

  /** Early messages held until the gap before them fills. */
  get bufferedCount(): number {
    return this.early.size;
  }

  /**
   * Builds the next stream message and records it as outstanding *before* the caller writes it,
   * so an acknowledgement that races the write is never missed. Write the returned bytes next.
   */
  send(payloadType: number, payload: Uint8Array, now: number, flags = 0): Buffer {
    const sequenceNumber = this.nextSequence++;
    const bytes = encodeClientMessage({
      messageType: this.sendType,
      createdDate: now,
      sequenceNumber,
      flags,
      messageId: this.newMessageId(),
      payloadType,
      payload,
    });
    this.outstanding.set(sequenceNumber, { sequenceNumber, bytes, lastSentAt: now, resendCount: 0 });
    return bytes;
  }

  /** Handles one websocket binary frame from the peer. */
  receive(bytes: Uint8Array, now: number): ReceiveResult {
    const result: ReceiveResult = { replies: [], delivered: [], acknowledged: [], control: [] };
    let message: ClientMessage;
    try {
      message = decodeClientMessage(bytes);
    } catch (err) {
      result.error = err instanceof ClientMessageError ? err : new ClientMessageError(String(err));
      return result;
    }
    switch (message.messageType) {
      case MessageType.Acknowledge:
        this.handleAcknowledge(message, now, result);
        break;
      case this.receiveType:
        this.handleStreamMessage(message, now, result);
        break;
      case MessageType.ChannelClosed:
      case MessageType.StartPublication:
      case MessageType.PausePublication:
        result.control.push(message);
        break;
      default:
        // Our own send type or an unknown type: not for this side; ignored as the official client does.
        break;
    }
    return result;
  }

  /**
   * Call every 100 ms: resends the oldest unacknowledged message when it has waited longer than the
   * retransmission timeout. Returns the bytes to write (zero or one message).
   */
  tick(now: number): Buffer[] {
    const oldest = this.outstanding.values().next().value as Outstanding | undefined;
    if (!oldest || now - oldest.lastSentAt <= this.rtoMs) return [];
    oldest.lastSentAt = now;
    oldest.resendCount++;
    return [oldest.bytes];
  }

  /** After a reconnect: every unacknowledged message, oldest first, to write on the new connection. */
  resendAll(now: number): Buffer[] {
    const out: Buffer[] = [];
    for (const entry of this.outstanding.values()) {
      entry.lastSentAt = now;
      entry.resendCount++;
      out.push(entry.bytes);
    }
    return out;
  }

  private handleAcknowledge(message: ClientMessage, now: number, result: ReceiveResult): void {
    let sequenceNumber: number;
    try {
      sequenceNumber = decodeAcknowledgeContent(message.payload).AcknowledgedMessageSequenceNumber;
    } catch (err) {
      result.error = err instanceof ClientMessageError ? err : new ClientMessageError(String(err));
      return;
    }
    const entry = this.outstanding.get(sequenceNumber);
    if (!entry) return; // a duplicate acknowledgement
    this.outstanding.delete(sequenceNumber);
    this.updateRetransmissionTimeout(now - entry.lastSentAt);
    result.acknowledged.push(sequenceNumber);
  }

  private handleStreamMessage(message: ClientMessage, now: number, result: ReceiveResult): void {
    const seq = message.sequenceNumber;
    if (seq === this.expected) {
      result.replies.push(encodeAcknowledgeMessage(message, now, this.newMessageId()));
      result.delivered.push(message);
      this.expected++;
      for (let next = this.early.get(this.expected); next; next = this.early.get(this.expected)) {
        this.early.delete(this.expected);
        result.delivered.push(next);
        this.expected++;
      }
    } else if (seq > this.expected) {
      if (this.early.has(seq)) {
        result.replies.push(encodeAcknowledgeMessage(message, now, this.newMessageId()));
      } else if (this.early.size < this.incomingCapacity) {
        // Copy: the caller's frame buffer may be reused.
        this.early.set(seq, { ...message, payload: Buffer.from(message.payload) });
        result.replies.push(encodeAcknowledgeMessage(message, now, this.newMessageId()));
      }
    } else {
      // A duplicate: the peer missed our acknowledgement, so acknowledge again.
      result.replies.push(encodeAcknowledgeMessage(message, now, this.newMessageId()));
    }
  }

  private updateRetransmissionTimeout(sampleMs: number): void {
    this.rttVarianceMs = (1 - RTT_BETA) * this.rttVarianceMs + RTT_BETA * Math.abs(this.rttMs - sampleMs);
    this.rttMs = (1 - RTT_ALPHA) * this.rttMs + RTT_ALPHA * sampleMs;
    this.rtoMs = Math.min(this.rttMs + Math.max(CLOCK_GRANULARITY_MS, 4 * this.rttVarianceMs), this.maxRtoMs);
  }
}

/** How often tick() should run (ms). */
export const RESEND_CHECK_INTERVAL_MS = 100;
/** The official sides' largest payload per stream message. */
export const STREAM_DATA_PAYLOAD_SIZE = 1024;
