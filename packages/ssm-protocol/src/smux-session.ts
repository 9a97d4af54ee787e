import { EventEmitter } from "node:events";
import { Duplex } from "node:stream";
import {
  encodeSmuxFrame,
  SMUX_DEFAULT_MAX_FRAME_SIZE,
  SmuxCommand,
  SmuxFrameDecoder,
  SmuxProtocolError,
} from "./smux-frame.js";
import type { SmuxFrame } from "./smux-frame.js";

export interface SmuxKeepAlive {
  /** NOP every intervalMs (smux default 10 s). */
  intervalMs: number;
  /** Close the session when nothing arrived for timeoutMs (smux default 30 s). */
  timeoutMs: number;
}

export interface SmuxSessionOptions {
  /** "client" opens odd stream ids from 3 and refuses the peer's (FIN); "server" accepts streams (and would open even ids from 2). */
  role: "client" | "server";
  /**
   * Carries smux bytes to the peer. Return false when the transport is saturated; the session then
   * holds stream write callbacks until resumeOutput() is called.
   */
  output: (chunk: Buffer) => boolean;
  /** Largest data per PSH frame (default 32768). */
  maxFrameSize?: number;
  /** Keep-alive as xtaci/smux does it; off when omitted or false. */
  keepAlive?: SmuxKeepAlive | false;
}

export class SmuxSessionClosedError extends Error {
  override name = "SmuxSessionClosedError";
}

/** One smux stream as a Node Duplex. A FIN from the peer ends the readable side; with the default allowHalfOpen false the stream then ends entirely, as smux v1 peers expect. */
export class SmuxStream extends Duplex {
  private finSent = false;

  constructor(
    readonly id: number,
    private readonly session: SmuxSession,
  ) {
    super({ allowHalfOpen: false });
  }

  override _read(): void {
    // Version 1 has no per-stream flow control: data is pushed as it arrives.
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.session.writeData(this.id, chunk, callback);
  }

  override _writev(chunks: { chunk: Buffer }[], callback: (error?: Error | null) => void): void {
    this.session.writeData(this.id, chunks.length === 1 ? chunks[0]!.chunk : Buffer.concat(chunks.map((c) => c.chunk)), callback);
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.sendFin();
    callback();
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.sendFin();
    this.session.forget(this.id);
    callback(error);
  }

  /** @internal */
  sendFin(): void {
    if (this.finSent) return;
    this.finSent = true;
    this.session.writeControl(SmuxCommand.Fin, this.id);
  }

  /** @internal the peer's FIN */
  remoteFin(): void {
    this.push(null);
  }
}

/**
 * A smux v1 session over any byte transport. Feed the peer's bytes to receive(); bytes for the peer go to options.output.
 * Events: "stream" (SmuxStream opened by the peer, server role only), "close" (Error | undefined).
 */
export class SmuxSession extends EventEmitter<{ stream: [SmuxStream]; close: [Error | undefined] }> {
  private readonly decoder = new SmuxFrameDecoder();
  private readonly streams = new Map<number, SmuxStream>();
  private readonly maxFrameSize: number;
  private nextStreamId: number;
  private outputBlocked = false;
  private heldCallbacks: ((error?: Error | null) => void)[] = [];
  private closed: { error: Error | undefined } | undefined;
  private receivedSinceCheck = false;
  private pingTimer: NodeJS.Timeout | undefined;
  private timeoutTimer: NodeJS.Timeout | undefined;

  constructor(private readonly options: SmuxSessionOptions) {
    super();
    this.maxFrameSize = Math.min(options.maxFrameSize ?? SMUX_DEFAULT_MAX_FRAME_SIZE, 0xffff);
    this.nextStreamId = options.role === "client" ? 1 : 0;
    if (options.keepAlive) this.startKeepAlive(options.keepAlive);
  }

  get isClosed(): boolean {
    return this.closed !== undefined;
  }

  get streamCount(): number {
    return this.streams.size;
  }

  /** Opens a stream (SYN now). Client ids are odd from 3; server ids even from 2. */
  openStream(): SmuxStream {
    if (this.closed) throw new SmuxSessionClosedError("smux session is closed");
    this.nextStreamId += 2;
    const stream = new SmuxStream(this.nextStreamId, this);
    this.streams.set(stream.id, stream);
    this.writeControl(SmuxCommand.Syn, stream.id);
    return stream;
  }

  /** Bytes from the peer, cut anywhere. */
  receive(chunk: Uint8Array): void {
    if (this.closed) return;
    this.receivedSinceCheck = true;
    let frames: SmuxFrame[];
    try {
      frames = this.decoder.push(chunk);
    } catch (err) {
      this.close(err instanceof SmuxProtocolError ? err : new SmuxProtocolError(String(err)));
      return;
    }
    for (const frame of frames) this.handleFrame(frame);
  }

  /** The transport can take more bytes again: release held writes. */
  resumeOutput(): void {
    this.outputBlocked = false;
    const held = this.heldCallbacks;
    this.heldCallbacks = [];
    for (const cb of held) {
      if (this.outputBlocked) this.heldCallbacks.push(cb);
      else cb();
    }
  }

  /**
   * Ends the session. Every open stream is destroyed: with `error` when given (streams then emit it),
   * otherwise without one (streams emit "close" without "end", which pipeline() reports as a premature close).
   */
  close(error?: Error): void {
    if (this.closed) return;
    this.closed = { error };
    clearInterval(this.pingTimer);
    clearInterval(this.timeoutTimer);
    for (const stream of [...this.streams.values()]) stream.destroy(error);
    this.streams.clear();
    const reason = error ?? new SmuxSessionClosedError("smux session closed");
    for (const cb of this.heldCallbacks) cb(reason);
    this.heldCallbacks = [];
    this.emit("close", error);
  }

  /** @internal */
  writeData(streamId: number, data: Buffer, callback: (error?: Error | null) => void): void {
    if (this.closed) {
      callback(new SmuxSessionClosedError("smux session closed"));
      return;
    }
    let ok = true;
    for (let offset = 0; offset < data.length; offset += this.maxFrameSize) {
      const piece = data.subarray(offset, Math.min(offset + this.maxFrameSize, data.length));
      ok = this.options.output(encodeSmuxFrame(SmuxCommand.Psh, streamId, piece)) && ok;
    }
    if (ok && !this.outputBlocked) callback();
    else {
      this.outputBlocked = true;
      this.heldCallbacks.push(callback);
    }
  }

  /** @internal */
  writeControl(command: typeof SmuxCommand.Syn | typeof SmuxCommand.Fin | typeof SmuxCommand.Nop, streamId: number): void {
    if (this.closed) return;
    if (!this.options.output(encodeSmuxFrame(command, streamId))) this.outputBlocked = true;
  }

  /** @internal */
  forget(streamId: number): void {
    this.streams.delete(streamId);
  }

  private handleFrame(frame: SmuxFrame): void {
    switch (frame.command) {
      case SmuxCommand.Nop:
        return;
      case SmuxCommand.Syn: {
        if (this.streams.has(frame.streamId)) return;
        if (this.options.role === "client") {
          // A client accepts no streams (the SSM agent never opens one): refused at once, so no stream is left
          // without an owner to hear its error when the session fails, and no peer id shadows one of ours.
          this.writeControl(SmuxCommand.Fin, frame.streamId);
          return;
        }
        const stream = new SmuxStream(frame.streamId, this);
        this.streams.set(frame.streamId, stream);
        this.emit("stream", stream);
        return;
      }
      case SmuxCommand.Fin:
        this.streams.get(frame.streamId)?.remoteFin();
        return;
      case SmuxCommand.Psh:
        // Data for an unknown (closed) stream is dropped, as smux does.
        if (frame.data.length > 0) this.streams.get(frame.streamId)?.push(frame.data);
        return;
    }
  }

  private startKeepAlive(keepAlive: SmuxKeepAlive): void {
    this.pingTimer = setInterval(() => this.writeControl(SmuxCommand.Nop, 0), keepAlive.intervalMs);
    this.timeoutTimer = setInterval(() => {
      if (!this.receivedSinceCheck) this.close(new SmuxSessionClosedError("smux keep-alive timeout"));
      this.receivedSinceCheck = false;
    }, keepAlive.timeoutMs);
    this.pingTimer.unref();
    this.timeoutTimer.unref();
  }
}
