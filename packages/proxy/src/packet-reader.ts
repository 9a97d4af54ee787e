import type { Duplex } from "node:stream";

/** What a codec's parse step returns when asked for the next packet. */
export type ParseStep<T> = { status: "incomplete" } | { status: "ok"; value: T; length: number } | { status: "invalid"; reason: string };

export class StreamClosedError extends Error {
  constructor(cause?: Error) {
    super(cause ? `connection closed: ${cause.message}` : "connection closed", cause ? { cause } : undefined);
  }
}

export class InvalidPacketError extends Error {}

/**
 * Reads whole packets off a stream during a handshake. Only used before the relay starts: it buffers what
 * arrives and hands packets to a pure parser. `release()` stops reading and gives back unread bytes so
 * the stream can be handed to TLS or piped.
 */
export class PacketReader {
  private buffer: Buffer = Buffer.alloc(0);
  private waiter: (() => void) | undefined;
  private failure: Error | undefined;
  private readonly onData = (chunk: Buffer) => {
    this.buffer = this.buffer.length === 0 ? chunk : Buffer.concat([this.buffer, chunk]);
    this.wake();
  };
  private readonly onEnd = () => this.fail(new StreamClosedError());
  private readonly onError = (err: Error) => this.fail(new StreamClosedError(err));

  constructor(private readonly stream: Duplex) {
    stream.on("data", this.onData);
    stream.on("end", this.onEnd);
    stream.on("close", this.onEnd);
    stream.on("error", this.onError);
  }

  /** Bytes received and not yet consumed. */
  get buffered(): number {
    return this.buffer.length;
  }

  /** Peeks at the first byte, waiting for one to arrive. */
  async firstByte(signal: AbortSignal): Promise<number> {
    while (this.buffer.length === 0) await this.wait(signal);
    return this.buffer[0]!;
  }

  /** Waits for one whole packet and consumes it. */
  async next<T>(parse: (buf: Buffer) => ParseStep<T>, signal: AbortSignal): Promise<T> {
    for (;;) {
      const step = parse(this.buffer);
      if (step.status === "ok") {
        this.buffer = this.buffer.subarray(step.length);
        return step.value;
      }
      if (step.status === "invalid") throw new InvalidPacketError(step.reason);
      await this.wait(signal);
    }
  }

  /** Stops reading (the stream is paused) and returns the bytes not consumed. */
  release(): Buffer {
    this.stream.pause();
    this.stream.off("data", this.onData);
    this.stream.off("end", this.onEnd);
    this.stream.off("close", this.onEnd);
    this.stream.off("error", this.onError);
    const rest = this.buffer;
    this.buffer = Buffer.alloc(0);
    return rest;
  }

  private wait(signal: AbortSignal): Promise<void> {
    if (this.failure) return Promise.reject(this.failure);
    if (signal.aborted) return Promise.reject(signal.reason);
    return new Promise((resolve, reject) => {
      const onAbort = () => {
        this.waiter = undefined;
        reject(signal.reason);
      };
      signal.addEventListener("abort", onAbort, { once: true });
      this.waiter = () => {
        signal.removeEventListener("abort", onAbort);
        this.waiter = undefined;
        if (this.failure) reject(this.failure);
        else resolve();
      };
    });
  }

  private wake(): void {
    this.waiter?.();
  }

  private fail(err: Error): void {
    this.failure ??= err;
    this.wake();
  }
}
