import { EventEmitter } from "node:events";
import { Duplex } from "node:stream";
import { encodeSmuxFrame, FlagValue, SmuxCommand, SmuxSession } from "@rdsd/ssm-protocol";
import type { SmuxStream } from "@rdsd/ssm-protocol";
import { DataChannel } from "./data-channel.js";
import type { DataChannelEnd, DataChannelOptions, HandshakeResult } from "./data-channel.js";
import { tunnelError } from "./errors.js";
import type { TunnelProblem } from "./errors.js";
import { silentLogger } from "./logger.js";
import type { TunnelLogger } from "./logger.js";
import type { TunnelSession, TunnelSessionEvents } from "./session.js";
import type { SsmApi } from "./ssm-api.js";

export interface NativeSessionOptions {
  api: SsmApi;
  instanceId: string;
  /** The database endpoint and port the bastion dials. */
  host: string;
  port: number;
  /** One per rdsd process (OpenDataChannel ClientId). */
  clientId: string;
  logger?: TunnelLogger;
  /** Passed to the data channel (timeouts, clock, payload size). */
  channel?: Partial<Omit<DataChannelOptions, "session" | "clientId" | "resume">>;
  /**
   * Bytes a stream may hold for a slow local reader before the whole session stops reading the
   * websocket (smux v1 has no per-stream flow control, so pausing the session is the only bound).
   */
  streamBufferLimit?: number;
  /** smux keep-alive when the agent keeps its own on (agents up to 3.1.1511.0). */
  keepAlive?: { intervalMs: number; timeoutMs: number };
}

const DEFAULT_STREAM_BUFFER_LIMIT = 1 << 20;
/** TerminateSession is attempted for this long at most: a stop must not wait on a slow or unreachable API. */
const TERMINATE_TIMEOUT_MS = 5_000;

/**
 * StartSession + data channel + handshake; the session to use, or a ProxyError. Nothing stays open on failure.
 * `signal` abandons the opening at any step; a session StartSession already returned is then terminated (bounded).
 */
export async function openNativeSession(options: NativeSessionOptions, signal: AbortSignal): Promise<NativeSession> {
  const logger = options.logger ?? silentLogger;
  const credentials = await options.api.startSession({ instanceId: options.instanceId, host: options.host, port: options.port }, signal);
  const channel = new DataChannel({
    ...options.channel,
    session: credentials,
    clientId: options.clientId,
    logger,
    resume: (s) => options.api.resumeSession(credentials.sessionId, s),
  });
  let handshake: HandshakeResult;
  try {
    handshake = await channel.open(signal);
  } catch (err) {
    await options.api.terminateSession(credentials.sessionId, AbortSignal.timeout(TERMINATE_TIMEOUT_MS)).catch((e: Error) => logger.warn("TerminateSession failed", { session: credentials.sessionId, error: e.message }));
    throw err;
  }
  logger.info("SSM session open", { session: credentials.sessionId, instance: options.instanceId, agent: handshake.agentVersion, multiplexed: handshake.multiplexed });
  return new NativeSession(options, channel, handshake);
}

/**
 * rdsd's own client of one SSM port session: smux streams over the data channel (one per proxied
 * connection), or one raw connection for agents too old to multiplex.
 */
export class NativeSession extends EventEmitter<TunnelSessionEvents> implements TunnelSession {
  readonly driver = "native" as const;
  readonly id: string;
  readonly instanceId: string;
  readonly singleUse: boolean;
  private readonly logger: TunnelLogger;
  private readonly smux: SmuxSession | undefined;
  private readonly streams = new Set<Duplex>();
  /** Streams whose reader is behind: the websocket is paused while any exist. */
  private readonly congested = new Set<Duplex>();
  private readonly bufferLimit: number;
  private spent = false;
  /** The agent reported a failed dial and no stream has reached the database since. */
  private destinationFailing = false;
  private endedWith: { problem: TunnelProblem | undefined } | undefined;
  private closing: Promise<void> | undefined;

  constructor(
    private readonly options: NativeSessionOptions,
    readonly channel: DataChannel,
    readonly handshake: HandshakeResult,
  ) {
    super();
    this.id = channel.sessionId;
    this.instanceId = options.instanceId;
    this.logger = options.logger ?? silentLogger;
    this.singleUse = !handshake.multiplexed;
    this.bufferLimit = options.streamBufferLimit ?? DEFAULT_STREAM_BUFFER_LIMIT;
    if (handshake.multiplexed) {
      const smux = new SmuxSession({
        role: "client",
        output: (chunk) => channel.write(chunk),
        keepAlive: handshake.keepAliveOff ? false : (options.keepAlive ?? { intervalMs: 10_000, timeoutMs: 30_000 }),
      });
      this.smux = smux;
      channel.on("data", (payload) => smux.receive(payload));
      channel.on("drain", () => smux.resumeOutput());
      smux.on("close", (err) => {
        if (err) this.finish({ message: `smux session ${this.id} failed: ${err.message}`, fix: "rdsd opens a new session by itself" }, true);
      });
    }
    channel.on("flag", (flag) => this.onFlag(flag));
    channel.on("end", (reason) => this.onChannelEnd(reason));
  }

  get agentVersion(): string {
    return this.handshake.agentVersion;
  }

  get activeStreams(): number {
    return this.streams.size;
  }

  get ended(): boolean {
    return this.endedWith !== undefined;
  }

  get unacknowledgedForMs(): number {
    return this.channel.unacknowledgedForMs;
  }

  get quietForMs(): number {
    return this.channel.quietForMs;
  }

  get available(): boolean {
    return !this.ended && !this.spent;
  }

  /**
   * A smux NOP frame in its own input_stream_data message: the agent acknowledges the message on receipt and its
   * multiplexer ignores the frame, so nothing reaches the database. Single-connection sessions have no framing
   * (any byte would go to the database) and are not checked: they carry one connection and are then replaced.
   */
  async checkAlive(): Promise<void> {
    if (this.endedWith) throw tunnelError(this.endedWith.problem ?? { message: `SSM session ${this.id} is closed`, fix: "rdsd opens a new session by itself" });
    if (!this.smux) return;
    await this.channel.checkAlive(encodeSmuxFrame(SmuxCommand.Nop, 0));
  }

  async openStream(): Promise<Duplex> {
    if (this.endedWith) throw tunnelError(this.endedWith.problem ?? { message: `SSM session ${this.id} is closed`, fix: "retry: rdsd opens a new session" });
    if (this.spent) throw tunnelError({ message: `SSM session ${this.id} already carries its one connection`, fix: "retry: rdsd opens a new session" });
    const stream = this.smux ? this.smux.openStream() : this.openSingleStream();
    this.streams.add(stream);
    stream.once("close", () => {
      this.streams.delete(stream);
      this.uncongest(stream);
    });
    if (this.smux) this.watchBackpressure(stream as SmuxStream);
    return stream;
  }

  /** Flag TerminateSession to the agent, close the websocket, TerminateSession on AWS. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      await this.channel.close({ terminate: true });
      this.finish(undefined, false);
      await this.options.api.terminateSession(this.id, AbortSignal.timeout(TERMINATE_TIMEOUT_MS)).catch((err: Error) => {
        this.logger.warn("TerminateSession failed", { session: this.id, error: err.message });
      });
    })();
    return this.closing;
  }

  private onFlag(flag: number): void {
    if (flag !== FlagValue.ConnectToPortError) return;
    const problem: TunnelProblem = {
      message: `bastion ${this.instanceId} could not connect to ${this.options.host}:${this.options.port}`,
      fix: "check the database's security group allows the bastion, that the database is available, and the target's host and port",
    };
    this.destinationFailing = true;
    this.emit("destination-error", problem);
    // The agent dials one stream at a time, in order: the failed one is the oldest that has received nothing.
    for (const stream of this.streams) {
      if (stream.readableLength === 0 && !(stream as Duplex & { receivedAny?: boolean }).receivedAny) {
        stream.destroy(tunnelError(problem));
        break;
      }
    }
  }

  /** A stream got its first bytes from the database: a destination error before it is over. */
  private reached(): void {
    if (!this.destinationFailing) return;
    this.destinationFailing = false;
    this.emit("destination-ok");
  }

  private onChannelEnd(reason: DataChannelEnd): void {
    this.finish(reason.kind === "stopped" ? undefined : reason.problem, reason.kind !== "stopped");
  }

  /** Everything ends: streams get the problem as their error; AWS is told when the session died on its own. */
  private finish(problem: TunnelProblem | undefined, terminateOnAws: boolean): void {
    if (this.endedWith) return;
    this.endedWith = { problem };
    const error = tunnelError(problem ?? { message: `the tunnel's SSM session ${this.id} was closed`, fix: "reconnect: rdsd opens a new session" });
    this.smux?.close(error);
    for (const stream of [...this.streams]) stream.destroy(error);
    if (!this.channel.ended) void this.channel.close();
    if (terminateOnAws) {
      // A session that failed here may still live on AWS (a lost websocket): make sure it does not.
      void this.options.api.terminateSession(this.id, AbortSignal.timeout(TERMINATE_TIMEOUT_MS)).catch(() => {});
    }
    this.emit("end", problem);
  }

  /** Marks streams that received data and pauses the websocket while one of them is over its limit. */
  private watchBackpressure(stream: SmuxStream): void {
    const marked = stream as SmuxStream & { receivedAny?: boolean };
    const push = stream.push.bind(stream);
    stream.push = (chunk: unknown, encoding?: BufferEncoding) => {
      const ok = push(chunk, encoding);
      if (chunk !== null) {
        if (!marked.receivedAny) this.reached();
        marked.receivedAny = true;
        if (!ok && stream.readableLength >= this.bufferLimit) this.congest(stream);
      }
      return ok;
    };
    const read = stream._read.bind(stream);
    stream._read = () => {
      read();
      this.uncongest(stream);
    };
  }

  private congest(stream: Duplex): void {
    if (this.congested.has(stream)) return;
    this.congested.add(stream);
    if (this.congested.size === 1) this.channel.pauseReading();
  }

  private uncongest(stream: Duplex): void {
    if (!this.congested.delete(stream)) return;
    if (this.congested.size === 0) this.channel.resumeReading();
  }

  /** Single-connection mode: raw bytes in Output payloads; DisconnectToPort when the local side closes. */
  private openSingleStream(): Duplex {
    this.spent = true;
    const channel = this.channel;
    const session = this;
    let pendingWrite: (() => void) | undefined;
    const stream: Duplex = new Duplex({
      allowHalfOpen: false,
      read() {
        session.uncongest(stream);
      },
      write(chunk: Buffer, _encoding, callback) {
        if (channel.write(chunk)) callback();
        else pendingWrite = () => callback();
      },
      destroy(error, callback) {
        channel.off("data", onData);
        channel.off("drain", onDrain);
        if (!channel.ended) {
          channel.sendFlag(FlagValue.DisconnectToPort);
          // One connection per session: this one is done; end it here and on AWS.
          void session.close();
        }
        callback(error);
      },
    });
    const marked = stream as Duplex & { receivedAny?: boolean };
    const onData = (payload: Buffer) => {
      if (!marked.receivedAny) this.reached();
      marked.receivedAny = true;
      if (!stream.push(payload) && stream.readableLength >= this.bufferLimit) this.congest(stream);
    };
    const onDrain = () => {
      const cb = pendingWrite;
      pendingWrite = undefined;
      cb?.();
    };
    channel.on("data", onData);
    channel.on("drain", onDrain);
    stream.once("end", () => stream.destroy());
    stream.once("finish", () => stream.destroy());
    return stream;
  }
}
