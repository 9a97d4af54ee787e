import { EventEmitter, once } from "node:events";
import { WebSocket } from "ws";
import {
  ActionStatus,
  agentSupportsKeepAliveOff,
  agentSupportsMultiplexing,
  clientSupportsMultiplexing,
  decodeChannelClosedPayload,
  decodeClientMessage,
  decodeFlag,
  decodeHandshakeRequest,
  encodeFlag,
  encodeHandshakeResponse,
  encodeOpenDataChannel,
  MessageType,
  PayloadType,
  randomUuid,
  ReliableChannel,
  RESEND_CHECK_INTERVAL_MS,
  sessionTypeOf,
  SmuxSession,
} from "@rdsd/ssm-protocol";
import type { ChannelClosedPayload, ClientMessage, SmuxStream } from "@rdsd/ssm-protocol";

/**
 * A minimal client of the data channel built only from @rdsd/ssm-protocol, for the emulator's tests.
 * It is not rdsd's client: no pacing, no reconnect policy, no supervision.
 */
export interface TestClientOptions {
  streamUrl: string;
  token: string;
  clientVersion?: string;
  clientId?: string;
  /** Acknowledge the agent's messages (default true). */
  acknowledge?: boolean;
  /** Largest payload per message (default 32 KiB). */
  maxPayload?: number;
}

export class TestDataChannelClient extends EventEmitter<{
  output: [Buffer];
  flag: [number];
  "channel-closed": [ChannelClosedPayload];
  "ws-close": [number];
  message: [ClientMessage];
}> {
  readonly channel = new ReliableChannel({ role: "client" });
  readonly clientId: string;
  readonly clientVersion: string;
  acknowledge: boolean;
  agentVersion = "";
  properties: unknown;
  smux: SmuxSession | undefined;
  /** Every message type received, in order (acknowledge, output_stream_data, ...), with payload types. */
  readonly log: { type: string; seq: number; payloadType: number; size: number }[] = [];
  ws: WebSocket | undefined;
  private readonly maxPayload: number;
  private readonly resendTimer: NodeJS.Timeout;
  private handshakeResolve!: () => void;
  readonly handshakeComplete: Promise<void>;

  private constructor(private readonly options: TestClientOptions) {
    super();
    this.clientId = options.clientId ?? randomUuid();
    this.clientVersion = options.clientVersion ?? "1.2.764.0";
    this.acknowledge = options.acknowledge ?? true;
    this.maxPayload = options.maxPayload ?? 32 << 10;
    this.handshakeComplete = new Promise((resolve) => (this.handshakeResolve = resolve));
    this.resendTimer = setInterval(() => {
      for (const bytes of this.channel.tick(Date.now())) this.ws?.send(bytes);
    }, RESEND_CHECK_INTERVAL_MS);
  }

  /** Opens the websocket and sends OpenDataChannel; does not wait for the handshake. */
  static async connect(options: TestClientOptions): Promise<TestDataChannelClient> {
    const client = new TestDataChannelClient(options);
    await client.openSocket(options.token);
    return client;
  }

  /** Multiplexed when both sides can: the agent by its version, this client by the version it reports. */
  get multiplexed(): boolean {
    return agentSupportsMultiplexing(this.agentVersion) && clientSupportsMultiplexing(this.clientVersion);
  }

  /** Resume after a drop: new token, same ClientId, resend what is unacknowledged. */
  async resume(token: string): Promise<void> {
    this.ws?.terminate();
    await this.openSocket(token);
    for (const bytes of this.channel.resendAll(Date.now())) this.ws!.send(bytes);
  }

  sendOutput(data: Buffer): void {
    for (let offset = 0; offset < data.length || (offset === 0 && data.length === 0); offset += this.maxPayload) {
      this.sendStream(PayloadType.Output, data.subarray(offset, offset + this.maxPayload));
      if (data.length === 0) break;
    }
  }

  sendFlag(flag: number): void {
    this.sendStream(PayloadType.Flag, encodeFlag(flag));
  }

  /** Raw bytes straight onto the websocket (for hostile-input tests). */
  sendRaw(bytes: Buffer): void {
    this.ws!.send(bytes);
  }

  openStream(): SmuxStream {
    if (!this.smux) throw new Error("not in multiplexed mode (or handshake not complete)");
    return this.smux.openStream();
  }

  close(): void {
    clearInterval(this.resendTimer);
    this.smux?.close();
    this.ws?.terminate();
  }

  private sendStream(payloadType: number, payload: Buffer): void {
    // Recorded as outstanding before the write.
    const bytes = this.channel.send(payloadType, payload, Date.now());
    if (this.ws?.readyState === WebSocket.OPEN) this.ws.send(bytes);
  }

  private async openSocket(token: string): Promise<void> {
    const ws = new WebSocket(this.options.streamUrl);
    this.ws = ws;
    ws.on("message", (data: Buffer, isBinary: boolean) => {
      if (isBinary) this.onFrame(data);
    });
    ws.on("close", (code) => this.emit("ws-close", code));
    ws.on("error", () => {});
    await once(ws, "open");
    ws.send(
      encodeOpenDataChannel({
        MessageSchemaVersion: "1.0",
        RequestId: randomUuid(),
        TokenValue: token,
        ClientId: this.clientId,
        ClientVersion: this.clientVersion,
      }),
    );
  }

  private onFrame(data: Buffer): void {
    const decoded = decodeClientMessage(data, { verifyDigest: false });
    this.log.push({ type: decoded.messageType, seq: decoded.sequenceNumber, payloadType: decoded.payloadType, size: decoded.payloadLength });
    const result = this.channel.receive(data, Date.now());
    if (result.error) throw result.error;
    // After the channel has seen it, so listeners observe the updated state.
    this.emit("message", decoded);
    if (this.acknowledge) for (const reply of result.replies) this.ws?.send(reply);
    for (const control of result.control) {
      if (control.messageType === MessageType.ChannelClosed) this.emit("channel-closed", decodeChannelClosedPayload(control.payload));
    }
    for (const message of result.delivered) this.onDelivered(message);
  }

  private onDelivered(message: ClientMessage): void {
    switch (message.payloadType) {
      case PayloadType.HandshakeRequest: {
        const request = decodeHandshakeRequest(message.payload);
        this.agentVersion = request.AgentVersion;
        this.properties = sessionTypeOf(request)?.Properties;
        this.sendStream(
          PayloadType.HandshakeResponse,
          encodeHandshakeResponse({
            ClientVersion: this.clientVersion,
            ProcessedClientActions: [{ ActionType: "SessionType", ActionStatus: ActionStatus.Success, ActionResult: null, Error: "" }],
            Errors: null,
          }),
        );
        return;
      }
      case PayloadType.HandshakeComplete:
        if (this.multiplexed) {
          this.smux = new SmuxSession({
            role: "client",
            output: (chunk) => (this.sendOutput(chunk), true),
            keepAlive: agentSupportsKeepAliveOff(this.agentVersion) ? false : { intervalMs: 10_000, timeoutMs: 30_000 },
          });
        }
        this.handshakeResolve();
        return;
      case PayloadType.Output:
        if (this.smux) this.smux.receive(message.payload);
        else this.emit("output", Buffer.from(message.payload));
        return;
      case PayloadType.Flag:
        this.emit("flag", decodeFlag(message.payload));
        return;
      default:
        return;
    }
  }
}
