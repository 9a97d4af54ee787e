import net from "node:net";
import tls from "node:tls";
import {
  buildSslRequest,
  buildStartupMessage,
  CANCEL_REQUEST_CODE,
  decodeErrorFields,
  frame,
  GSSENC_REQUEST_CODE,
  readBackendFrame,
  textParameter,
  type BackendFrame,
  type ErrorFields,
} from "@rdsd/pg-wire";

const DEFAULT_WAIT_MS = 10_000;

/**
 * A test client that speaks the protocol byte by byte: it sends what it is told and reads back single bytes
 * (SSLRequest answers) or whole backend frames, so tests can see exactly what the proxy sent and when it closed.
 */
export class RawConnection {
  private buffer = Buffer.alloc(0);
  private ended = false;
  private wake: (() => void) | undefined;
  private readonly onData = (chunk: Buffer) => {
    this.buffer = Buffer.concat([this.buffer, chunk]);
    this.wake?.();
  };
  private readonly onClose = () => {
    this.ended = true;
    this.wake?.();
  };
  /** Resolves when the socket has closed (for any reason). */
  readonly closed: Promise<void>;
  private static readonly live = new Set<RawConnection>();

  /** Destroys the connections tests left open (a failed test must not leave the proxy busy for the next); how many. */
  static destroyAll(): number {
    const left = [...RawConnection.live].filter((conn) => !conn.ended);
    for (const conn of RawConnection.live) conn.transport.destroy();
    return left.length;
  }

  /**
   * @param socket what the test reads and writes (a TLS socket after startTls)
   * @param transport the TCP socket underneath, to reset it
   */
  constructor(
    readonly socket: net.Socket | tls.TLSSocket,
    readonly transport: net.Socket = socket,
  ) {
    socket.on("data", this.onData);
    socket.on("error", () => {}); // resets by the proxy are outcomes the tests inspect, not failures
    RawConnection.live.add(this);
    this.closed = new Promise((resolve) =>
      socket.once("close", () => {
        RawConnection.live.delete(this);
        resolve();
      }),
    );
    socket.once("close", this.onClose);
    socket.once("end", this.onClose);
  }

  static open(port: number, host = "127.0.0.1"): Promise<RawConnection> {
    return new Promise((resolve, reject) => {
      const socket = net.connect({ host, port, noDelay: true }, () => {
        socket.off("error", reject);
        resolve(new RawConnection(socket));
      });
      socket.once("error", reject);
    });
  }

  /** Direct TLS (no SSLRequest first), as PostgreSQL 17's sslnegotiation=direct does. */
  static async openDirectTls(port: number, options: tls.ConnectionOptions): Promise<RawConnection> {
    const tcp = await RawConnection.open(port);
    return tcp.startTls(options);
  }

  send(...chunks: Buffer[]): void {
    this.socket.write(Buffer.concat(chunks));
  }

  /** Bytes received and not read yet. */
  get unread(): number {
    return this.buffer.length;
  }

  /** The next single byte (the answer to SSLRequest or GSSENCRequest). */
  async byte(timeoutMs = DEFAULT_WAIT_MS): Promise<number> {
    await this.until(() => this.buffer.length >= 1, timeoutMs, "a byte");
    const b = this.buffer[0]!;
    this.buffer = this.buffer.subarray(1);
    return b;
  }

  /** The next whole backend message. */
  async frame(timeoutMs = DEFAULT_WAIT_MS): Promise<BackendFrame> {
    let result = readBackendFrame(this.buffer, Number.MAX_SAFE_INTEGER);
    while (result.status === "incomplete") {
      await this.until(() => readBackendFrame(this.buffer, Number.MAX_SAFE_INTEGER).status !== "incomplete", timeoutMs, "a backend message");
      result = readBackendFrame(this.buffer, Number.MAX_SAFE_INTEGER);
    }
    if (result.status === "invalid") throw new Error(`invalid backend message: ${result.reason}`);
    this.buffer = this.buffer.subarray(result.length);
    return { ...result.frame, body: Buffer.from(result.frame.body), raw: Buffer.from(result.frame.raw) };
  }

  /** Messages up to and including the first of type `last`. */
  async framesUntil(last: string, timeoutMs = DEFAULT_WAIT_MS): Promise<BackendFrame[]> {
    const frames: BackendFrame[] = [];
    for (;;) {
      const f = await this.frame(timeoutMs);
      frames.push(f);
      if (f.type === last) return frames;
    }
  }

  /** The next message, which must be an ErrorResponse; its fields. */
  async error(timeoutMs = DEFAULT_WAIT_MS): Promise<ErrorFields> {
    const f = await this.frame(timeoutMs);
    if (f.type !== "E") throw new Error(`expected an ErrorResponse, got '${f.type}'`);
    return decodeErrorFields(f.body);
  }

  /** Everything still to come, until the proxy closes the connection. */
  async rest(timeoutMs = DEFAULT_WAIT_MS): Promise<Buffer> {
    await this.until(() => this.ended, timeoutMs, "the connection to close");
    const all = this.buffer;
    this.buffer = Buffer.alloc(0);
    return all;
  }

  /** Upgrades to TLS after the proxy answered 'S'; this connection must not be used afterwards. */
  startTls(options: tls.ConnectionOptions): Promise<RawConnection> {
    if (this.buffer.length > 0) throw new Error(`${this.buffer.length} unread bytes before TLS`);
    RawConnection.live.delete(this); // the TLS connection stands for it from now on
    this.socket.off("data", this.onData);
    this.socket.off("close", this.onClose);
    this.socket.off("end", this.onClose);
    return new Promise((resolve, reject) => {
      const secure = tls.connect({ socket: this.socket as net.Socket, ...options }, () => {
        secure.off("error", reject);
        resolve(new RawConnection(secure, this.transport));
      });
      secure.once("error", (err) => {
        this.transport.destroy();
        reject(err);
      });
    });
  }

  /** Resets the TCP connection (RST), once what was written so far has been handed to the kernel. */
  async reset(): Promise<void> {
    await new Promise<void>((resolve) => this.socket.write(Buffer.alloc(0), () => resolve()));
    this.transport.resetAndDestroy();
  }

  /** Sends Terminate and waits for the close. */
  async terminate(): Promise<void> {
    this.send(frame("X", Buffer.alloc(0)));
    this.socket.end();
    await this.closed;
  }

  destroy(): void {
    this.socket.destroy();
  }

  private async until(ready: () => boolean, timeoutMs: number, what: string): Promise<void> {
    const deadline = performance.now() + timeoutMs; // not Date: some tests freeze it
    while (!ready()) {
      if (this.ended) throw new ConnectionClosedError(`connection closed while waiting for ${what} (${this.buffer.length} unread bytes)`);
      const left = deadline - performance.now();
      if (left <= 0) throw new Error(`timed out waiting for ${what}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.wake = () => {
          clearTimeout(timer);
          this.wake = undefined;
          resolve();
        };
      });
    }
  }
}

export class ConnectionClosedError extends Error {}

/** A StartupMessage (protocol 3.minor) with text parameters in the given order. */
export function startupMessage(parameters: Record<string, string>, minorVersion = 0): Buffer {
  return buildStartupMessage(
    3,
    minorVersion,
    Object.entries(parameters).map(([name, value]) => textParameter(name, value)),
  );
}

export const sslRequest = buildSslRequest;

export function gssencRequest(): Buffer {
  const out = Buffer.alloc(8);
  out.writeUInt32BE(8, 0);
  out.writeUInt32BE(GSSENC_REQUEST_CODE, 4);
  return out;
}

/** A CancelRequest: 16 bytes with a 4-byte key (protocol 3.0), longer with a 3.2 key. */
export function cancelRequest(processId: number, secretKey: Buffer): Buffer {
  const out = Buffer.alloc(12 + secretKey.length);
  out.writeUInt32BE(out.length, 0);
  out.writeUInt32BE(CANCEL_REQUEST_CODE, 4);
  out.writeUInt32BE(processId, 8);
  secretKey.copy(out, 12);
  return out;
}

/** A simple Query message. */
export function query(sql: string): Buffer {
  return frame("Q", Buffer.from(sql + "\0", "utf8"));
}

/** The text of each DataRow's first column in these frames. */
export function firstColumn(frames: BackendFrame[]): string[] {
  return frames
    .filter((f) => f.type === "D")
    .map((f) => {
      const length = f.body.readInt32BE(2);
      return f.body.toString("utf8", 6, 6 + length);
    });
}

/** A backend message's type letters, for asserting message order. */
export function types(frames: BackendFrame[]): string {
  return frames.map((f) => f.type).join("");
}
