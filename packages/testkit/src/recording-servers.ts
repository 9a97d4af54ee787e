import type { Socket } from "node:net";
import { createSecureContext, TLSSocket } from "node:tls";
import type { PemKeyPair } from "@rdsd/certs";
import { tcpServer } from "./tcp-server.js";

/**
 * Fake Postgres servers for "the secret must never reach the server" tests. They answer the SSLRequest,
 * then act like a server that wants a cleartext password: to the first StartupMessage they reply
 * AuthenticationCleartextPassword, so a client that wrongly carries on would send its password (token) next,
 * and it would be recorded. Everything the client sends after the SSLRequest (decrypted, for TLS) is recorded.
 */
export interface RecordingServer {
  port: number;
  /** Every byte received so far, all connections in order of arrival (SSLRequests excluded). */
  received(): Buffer;
  /** How many TCP connections were accepted: proves the client did try. */
  connectionCount(): number;
  /** Resolves when received() satisfies the predicate (checked on every arrival); rejects after timeoutMs. */
  waitFor(predicate: (received: Buffer) => boolean, timeoutMs?: number): Promise<Buffer>;
  close(): Promise<void>;
}

export interface RecordingTlsServer extends RecordingServer {
  /** Whether any TLS handshake completed. */
  handshakeCompleted(): boolean;
}

const SSL_REQUEST_CODE = 80877103;
const PROTOCOL_3_0 = 196608;
const MAX_STARTUP_LENGTH = 10_000;
/** 'R', length 8, code 3: AuthenticationCleartextPassword. */
const AUTH_CLEARTEXT_PASSWORD = Buffer.from([0x52, 0, 0, 0, 8, 0, 0, 0, 3]);

function isSslRequest(head: Buffer): boolean {
  return head.length >= 8 && head.readInt32BE(0) === 8 && head.readInt32BE(4) === SSL_REQUEST_CODE;
}

/** Shared bookkeeping of both servers: the recording and the waiters. */
class Recorder {
  private readonly chunks: Buffer[] = [];
  private readonly waiters = new Set<() => void>();

  record(chunk: Buffer): void {
    this.chunks.push(chunk);
    for (const wake of this.waiters) wake();
  }

  received(): Buffer {
    return Buffer.concat(this.chunks);
  }

  waitFor(predicate: (received: Buffer) => boolean, timeoutMs = 5_000): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      const check = () => {
        const all = this.received();
        if (!predicate(all)) return;
        this.waiters.delete(check);
        clearTimeout(timer);
        resolve(all);
      };
      const timer = setTimeout(() => {
        this.waiters.delete(check);
        reject(new Error(`recording server: expected bytes did not arrive within ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiters.add(check);
      check();
    });
  }
}

/**
 * Records one protocol stream: answers the first complete StartupMessage (protocol 3.0) with a cleartext
 * password request. Malformed input is recorded and otherwise ignored.
 */
function recordPostgresStream(stream: Socket, recorder: Recorder): void {
  let pending: Buffer | undefined = Buffer.alloc(0); // undefined once the startup message was answered
  stream.on("data", (chunk: Buffer) => {
    recorder.record(chunk);
    if (!pending) return;
    pending = Buffer.concat([pending, chunk]);
    if (pending.length < 8) return;
    const length = pending.readInt32BE(0);
    if (length < 8 || length > MAX_STARTUP_LENGTH) {
      pending = undefined; // not a startup message: just keep recording
      return;
    }
    if (pending.length < length) return;
    if (pending.readInt32BE(4) === PROTOCOL_3_0) stream.write(AUTH_CLEARTEXT_PASSWORD);
    pending = undefined;
  });
}

/**
 * Reads the first 8 bytes of a connection. If they are an SSLRequest, calls onSslRequest with whatever the client
 * sent after them without waiting for the answer (normally nothing). Otherwise the bytes go back into the socket
 * and onOther is called: a client that skips the SSLRequest sends its startup, and maybe its secrets, in plaintext.
 */
function readSslRequest(socket: Socket, onSslRequest: (early: Buffer) => void, onOther: () => void): void {
  let head = Buffer.alloc(0);
  const onData = (chunk: Buffer) => {
    head = Buffer.concat([head, chunk]);
    if (head.length < 8) return;
    socket.off("data", onData);
    if (isSslRequest(head)) {
      onSslRequest(head.subarray(8));
      return;
    }
    socket.pause();
    socket.unshift(head);
    onOther();
    socket.resume();
  };
  socket.on("data", onData);
}

/** Answers SSLRequest with 'S', does TLS with the given certificate and records the decrypted bytes. */
export async function recordingTlsServer(pair: PemKeyPair): Promise<RecordingTlsServer> {
  const recorder = new Recorder();
  const secureContext = createSecureContext({ cert: pair.certPem, key: pair.keyPem });
  let handshakes = 0;
  const server = await tcpServer((socket) => {
    readSslRequest(
      socket,
      (early) => {
        if (early.length > 0) recorder.record(early); // plaintext sent before our answer
        socket.write("S");
        const tlsSocket = new TLSSocket(socket, { isServer: true, secureContext });
        tlsSocket.on("error", () => {}); // a client refusing our certificate aborts the handshake
        tlsSocket.once("secure", () => handshakes++);
        recordPostgresStream(tlsSocket, recorder);
      },
      () => recordPostgresStream(socket, recorder),
    );
  });
  return {
    port: server.port,
    received: () => recorder.received(),
    connectionCount: () => server.connections.length,
    waitFor: (predicate, timeoutMs) => recorder.waitFor(predicate, timeoutMs),
    handshakeCompleted: () => handshakes > 0,
    close: server.close,
  };
}

/** A server without TLS: answers SSLRequest with 'N' and records all raw bytes that follow. */
export async function recordingPlainServer(opts: { answerSsl: "N" } = { answerSsl: "N" }): Promise<RecordingServer> {
  const recorder = new Recorder();
  const server = await tcpServer((socket) => {
    const record = () => recordPostgresStream(socket, recorder);
    readSslRequest(
      socket,
      (early) => {
        socket.write(opts.answerSsl);
        record();
        if (early.length > 0) socket.emit("data", early); // the client did not wait for the answer
      },
      record,
    );
  });
  return {
    port: server.port,
    received: () => recorder.received(),
    connectionCount: () => server.connections.length,
    waitFor: (predicate, timeoutMs) => recorder.waitFor(predicate, timeoutMs),
    close: server.close,
  };
}
