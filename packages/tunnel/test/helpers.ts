import { createHash } from "node:crypto";
import { once } from "node:events";
import { createServer } from "node:net";
import type { AddressInfo, Server, Socket } from "node:net";
import type { Duplex } from "node:stream";
import { staticCredentialProvider } from "@rdsd/iam";
import type { Emulator } from "@rdsd/ssm-emulator";
import { SsmApi } from "../src/ssm-api.js";

export const RDS_HOST = "orders-dev.abc123xyz.eu-west-2.rds.amazonaws.com";

export function apiFor(emulator: Emulator): SsmApi {
  return new SsmApi({ region: emulator.region, endpoint: emulator.endpoint, credentials: staticCredentialProvider(emulator.credentials) });
}

export interface TcpServer {
  port: number;
  connections: Socket[];
  close(): Promise<void>;
}

/** A loopback TCP server running `handler` per connection. */
export async function tcpServer(handler: (socket: Socket) => void): Promise<TcpServer> {
  const connections: Socket[] = [];
  const server: Server = createServer((socket) => {
    connections.push(socket);
    socket.on("error", () => {});
    handler(socket);
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  return {
    port: (server.address() as AddressInfo).port,
    connections,
    close: async () => {
      for (const c of connections) c.destroy();
      server.close();
      await once(server, "close");
    },
  };
}

export const echoServer = () => tcpServer((s) => s.pipe(s));

/** Answers an SSLRequest with 'S' and then echoes: enough for the tunnel's probe. */
export const sslAnsweringEchoServer = () =>
  tcpServer((s) => {
    let head = Buffer.alloc(0);
    let answered = false;
    s.on("data", (chunk: Buffer) => {
      if (answered) {
        s.write(chunk);
        return;
      }
      head = Buffer.concat([head, chunk]);
      if (head.length < 8) return;
      answered = true;
      if (head.readUInt32BE(4) === 80877103) {
        s.write("S");
        if (head.length > 8) s.write(head.subarray(8));
      } else s.write(head);
    });
  });

/** Deterministic pseudo-random bytes. */
export function pattern(length: number, seed = 1): Buffer {
  const out = Buffer.allocUnsafe(length);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

export function sha256(data: Buffer): string {
  return createHash("sha256").update(data).digest("hex");
}

/** Reads exactly n bytes from a stream (hashing as it goes), rejecting on error or early end. */
export function readN(stream: Duplex, n: number): Promise<{ hash: string; bytes: Buffer | undefined }> {
  return new Promise((resolve, reject) => {
    const hash = createHash("sha256");
    const keep: Buffer[] = [];
    let got = 0;
    const onData = (chunk: Buffer) => {
      got += chunk.length;
      hash.update(chunk);
      if (n <= 1 << 20) keep.push(chunk);
      if (got >= n) {
        cleanup();
        resolve({ hash: hash.digest("hex"), bytes: n <= 1 << 20 ? Buffer.concat(keep) : undefined });
      }
    };
    const onEnd = () => {
      cleanup();
      reject(new Error(`stream ended after ${got} of ${n} bytes`));
    };
    const onError = (err: Error) => {
      cleanup();
      reject(err);
    };
    const cleanup = () => {
      stream.off("data", onData);
      stream.off("end", onEnd);
      stream.off("close", onEnd);
      stream.off("error", onError);
    };
    stream.on("data", onData);
    stream.on("end", onEnd);
    stream.on("close", onEnd);
    stream.on("error", onError);
  });
}

/** Writes `data` in pieces, honouring backpressure. */
export async function writeAll(stream: Duplex, data: Buffer, piece = 64 << 10): Promise<void> {
  for (let offset = 0; offset < data.length; offset += piece) {
    if (!stream.write(data.subarray(offset, Math.min(offset + piece, data.length)))) await once(stream, "drain");
  }
}

/** The error a stream ends with (or undefined when it closes cleanly). */
export function streamError(stream: Duplex): Promise<Error | undefined> {
  return new Promise((resolve) => {
    let error: Error | undefined;
    stream.on("error", (e) => (error = e));
    stream.once("close", () => resolve(error));
    stream.resume();
  });
}
