import type { Socket } from "node:net";
import { FlagValue, SmuxSession } from "@rdsd/ssm-protocol";
import type { SmuxStream } from "@rdsd/ssm-protocol";

/** What a forwarder needs from the session that owns it. */
export interface ForwarderHost {
  /** Queues bytes for the client (Output payloads); false when the queue is past its high-water mark. */
  sendOutput(data: Buffer): boolean;
  sendFlag(flag: number): void;
  /** Connects to the session's destination (resolved once per session); rejects when it cannot. */
  dial(): Promise<Socket>;
  /** The forwarder cannot go on (e.g. smux keep-alive timeout). */
  fail(reason: string): void;
}

export interface Forwarder {
  readonly mode: "multiplexed" | "single";
  /** Whether the agent's smux keep-alive is on (multiplexed mode only). */
  readonly keepAlive: boolean;
  /** An Output payload from the client. */
  fromClient(payload: Buffer): void;
  /** The client's DisconnectToPort flag. */
  disconnect(): void;
  /** The outgoing queue has room again. */
  outputDrained(): void;
  /** Destination connections currently open. */
  readonly openConnections: number;
  close(): void;
}

/** Multiplexed mode: the agent is the smux v1 server; each stream is one destination connection. */
export class MultiplexedForwarder implements Forwarder {
  readonly mode = "multiplexed";
  private readonly smux: SmuxSession;
  private readonly sockets = new Set<Socket>();
  // The agent dials one stream at a time.
  private dialing: Promise<void> = Promise.resolve();
  private closed = false;

  constructor(
    private readonly host: ForwarderHost,
    readonly keepAlive: boolean,
  ) {
    this.smux = new SmuxSession({
      role: "server",
      output: (chunk) => host.sendOutput(chunk),
      keepAlive: keepAlive ? { intervalMs: 10_000, timeoutMs: 30_000 } : false,
    });
    this.smux.on("stream", (stream) => {
      stream.on("error", () => {});
      this.dialing = this.dialing.then(() => this.connect(stream));
    });
    this.smux.on("close", (err) => {
      if (!this.closed && err) host.fail(err.message);
    });
  }

  get openConnections(): number {
    return this.sockets.size;
  }

  fromClient(payload: Buffer): void {
    this.smux.receive(payload);
  }

  disconnect(): void {
    // Not used in multiplexed mode: closing a stream is a smux FIN.
  }

  outputDrained(): void {
    this.smux.resumeOutput();
  }

  close(): void {
    this.closed = true;
    this.smux.close();
    for (const s of this.sockets) s.destroy();
  }

  private async connect(stream: SmuxStream): Promise<void> {
    if (stream.destroyed || this.closed) return;
    let socket: Socket;
    try {
      socket = await this.host.dial();
    } catch {
      this.host.sendFlag(FlagValue.ConnectToPortError);
      stream.destroy();
      return;
    }
    if (stream.destroyed || this.closed) {
      socket.destroy();
      return;
    }
    this.sockets.add(socket);
    // FIN closes the whole stream in smux v1: either side ending tears down both.
    const teardown = () => {
      this.sockets.delete(socket);
      socket.destroy();
      stream.destroy();
    };
    socket.on("error", teardown);
    socket.on("close", teardown);
    stream.on("close", teardown);
    socket.on("end", () => stream.end());
    stream.on("end", () => socket.end());
    socket.pipe(stream, { end: false });
    stream.pipe(socket, { end: false });
  }
}

/** Single-connection mode: raw bytes, one destination connection at a time, redialed on the next data. */
export class SingleConnectionForwarder implements Forwarder {
  readonly mode = "single";
  readonly keepAlive = false;
  private socket: Socket | undefined;
  // Bumped by disconnect(): a dial that finishes after it belongs to a connection the client already closed.
  private generation = 0;
  private connecting: Promise<Socket | undefined> | undefined;
  private closed = false;

  constructor(private readonly host: ForwarderHost) {}

  get openConnections(): number {
    return this.socket ? 1 : 0;
  }

  fromClient(payload: Buffer): void {
    if (this.closed) return;
    if (this.socket) {
      this.socket.write(payload);
      return;
    }
    // Keep order while dialing: chain the write after the connection attempt.
    this.connecting ??= this.open();
    const attempt = this.connecting;
    void attempt.then((socket) => socket?.write(payload));
  }

  disconnect(): void {
    this.generation++;
    this.socket?.destroy();
    this.socket = undefined;
    this.connecting = undefined;
  }

  outputDrained(): void {
    this.socket?.resume();
  }

  close(): void {
    this.closed = true;
    this.disconnect();
  }

  private async open(): Promise<Socket | undefined> {
    const generation = this.generation;
    let socket: Socket;
    try {
      socket = await this.host.dial();
    } catch {
      if (generation === this.generation) this.connecting = undefined;
      this.host.sendFlag(FlagValue.ConnectToPortError);
      return undefined;
    }
    if (this.closed || generation !== this.generation) {
      socket.destroy();
      return undefined;
    }
    this.socket = socket;
    socket.on("data", (chunk: Buffer) => {
      if (!this.host.sendOutput(chunk)) socket.pause();
    });
    const forget = () => {
      if (this.socket === socket) {
        this.socket = undefined;
        this.connecting = undefined;
      }
    };
    socket.on("error", forget);
    socket.on("close", forget);
    return socket;
  }
}
