import { once } from "node:events";
import type { AddressInfo } from "node:net";
import { WebSocketServer } from "ws";
import type { WebSocket } from "ws";
import {
  decodeAcknowledgeContent,
  decodeClientMessage,
  decodeOpenDataChannel,
  encodeAcknowledgeMessage,
  encodeClientMessage,
  encodeHandshakeComplete,
  encodeHandshakeRequest,
  MessageFlags,
  MessageType,
  PayloadType,
  randomUuid,
} from "@rdsd/ssm-protocol";
import type { ClientMessage, OpenDataChannelRequest } from "@rdsd/ssm-protocol";

/**
 * An agent whose every message is written by the test: exact sequence numbers, order, duplicates,
 * acknowledgements or none. For protocol edge cases the emulator (a well-behaved agent) does not produce.
 */
export class ScriptedAgent {
  readonly connections: AgentConnection[] = [];
  private readonly server: WebSocketServer;
  private waiters: ((c: AgentConnection) => void)[] = [];

  private constructor(server: WebSocketServer) {
    this.server = server;
    server.on("connection", (ws) => {
      const conn = new AgentConnection(ws);
      this.connections.push(conn);
      for (const w of this.waiters.splice(0)) w(conn);
    });
  }

  static async start(): Promise<ScriptedAgent> {
    const server = new WebSocketServer({ host: "127.0.0.1", port: 0 });
    await once(server, "listening");
    return new ScriptedAgent(server);
  }

  get url(): string {
    return `ws://127.0.0.1:${(this.server.address() as AddressInfo).port}/v1/data-channel/s-1?role=publish_subscribe`;
  }

  /** The next websocket connection (or the latest one not yet handed out). */
  nextConnection(): Promise<AgentConnection> {
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  async close(): Promise<void> {
    for (const c of this.connections) c.ws.terminate();
    this.server.close();
  }
}

export class AgentConnection {
  open: OpenDataChannelRequest | undefined;
  /** Client stream messages (input_stream_data), in arrival order, duplicates included. */
  readonly received: ClientMessage[] = [];
  /** Sequence numbers the client acknowledged. */
  readonly acks: number[] = [];
  private listeners: (() => void)[] = [];
  private readonly opened: Promise<OpenDataChannelRequest>;

  constructor(readonly ws: WebSocket) {
    this.opened = new Promise((resolve) => {
      ws.on("message", (data: Buffer, isBinary) => {
        if (!isBinary) {
          this.open = decodeOpenDataChannel(data.toString("utf8"));
          resolve(this.open);
        } else {
          const m = decodeClientMessage(data);
          if (m.messageType === MessageType.Acknowledge) this.acks.push(decodeAcknowledgeContent(m.payload).AcknowledgedMessageSequenceNumber);
          else this.received.push({ ...m, payload: Buffer.from(m.payload) });
        }
        for (const l of this.listeners.splice(0)) l();
      });
    });
  }

  opening(): Promise<OpenDataChannelRequest> {
    return this.opened;
  }

  /** Resolves once `predicate` holds (checked on each message, and every 20 ms for client-side state), or rejects after timeoutMs. */
  until(predicate: () => boolean, timeoutMs = 5_000): Promise<void> {
    return new Promise((resolve, reject) => {
      const finish = (err?: Error) => {
        clearTimeout(deadline);
        clearInterval(poll);
        if (err) reject(err);
        else resolve();
      };
      const deadline = setTimeout(() => finish(new Error("condition not met in time")), timeoutMs);
      const poll = setInterval(() => predicate() && finish(), 20);
      const check = () => {
        if (predicate()) finish();
        else this.listeners.push(check);
      };
      check();
    });
  }

  /** An output_stream_data message with an explicit sequence number. */
  static output(seq: number, payloadType: number, payload: Buffer, flags: number = MessageFlags.Data): Buffer {
    return encodeClientMessage({
      messageType: MessageType.OutputStreamData,
      createdDate: Date.now(),
      sequenceNumber: seq,
      flags,
      messageId: randomUuid(),
      payloadType,
      payload,
    });
  }

  send(bytes: Buffer): void {
    this.ws.send(bytes, { binary: true });
  }

  ack(message: ClientMessage): void {
    this.send(encodeAcknowledgeMessage(message, Date.now()));
  }

  /** HandshakeRequest (seq 0), waits for the response, acknowledges it, HandshakeComplete (seq 1). */
  async handshake(agentVersion = "3.3.1802.0", type = "LocalPortForwarding"): Promise<void> {
    await this.opening();
    this.send(
      AgentConnection.output(
        0,
        PayloadType.HandshakeRequest,
        encodeHandshakeRequest({
          AgentVersion: agentVersion,
          RequestedClientActions: [{ ActionType: "SessionType", ActionParameters: { SessionType: "Port", Properties: { portNumber: "5432", type, host: "db", localPortNumber: "0" } } }],
        }),
        MessageFlags.Syn,
      ),
    );
    await this.until(() => this.received.some((m) => m.payloadType === PayloadType.HandshakeResponse));
    this.ack(this.received.find((m) => m.payloadType === PayloadType.HandshakeResponse)!);
    this.send(AgentConnection.output(1, PayloadType.HandshakeComplete, encodeHandshakeComplete({ HandshakeTimeToComplete: 1000, CustomerMessage: "" })));
  }

  /** Client Output payloads received so far (first copy of each sequence number), concatenated in sequence order. */
  outputBytes(): Buffer {
    const bySeq = new Map<number, Buffer>();
    for (const m of this.received) if (m.payloadType === PayloadType.Output && !bySeq.has(m.sequenceNumber)) bySeq.set(m.sequenceNumber, m.payload);
    return Buffer.concat([...bySeq.entries()].sort((a, b) => a[0] - b[0]).map(([, p]) => p));
  }
}
