import type { Socket } from "node:net";
import { Duplex } from "node:stream";
import tls from "node:tls";
import {
  parseFirstPacket,
  POSTGRES_ALPN,
  SqlState,
  TLS_HANDSHAKE_RECORD,
  type CancelRequest,
  type FirstPacket,
  type StartupMessage,
} from "@rdsd/pg-wire";
import { ProxyError } from "./errors.js";
import { PacketReader, type ParseStep } from "./packet-reader.js";

/** How the client-facing half of the startup phase behaves. */
export interface ClientStartupOptions {
  /** Local TLS offered to clients; null answers SSLRequest with N and refuses direct TLS. */
  tls: tls.SecureContext | null;
  /** Aborts a client that has not finished its startup in time. */
  signal: AbortSignal;
}

/** The outcome of a client's startup phase. */
export type ClientHello =
  | { kind: "startup"; socket: Socket | tls.TLSSocket; message: StartupMessage; tls: boolean; pending: Buffer }
  | { kind: "cancel"; socket: Socket | tls.TLSSocket; request: CancelRequest };

const SSL_YES = Buffer.from("S");
const NO = Buffer.from("N");

/**
 * Runs the untyped startup phase with a client, as a PostgreSQL server would: SSLRequest (local TLS or N),
 * GSSENCRequest (N), direct TLS (ALPN postgresql), then a StartupMessage or a CancelRequest.
 * Throws a ProxyError for protocol violations; `current.stream` tells the caller where the client can still be told.
 */
export async function readClientHello(socket: Socket, options: ClientStartupOptions, current: { stream: Socket | tls.TLSSocket }): Promise<ClientHello> {
  let stream: Socket | tls.TLSSocket = socket;
  let reader = new PacketReader(stream);
  current.stream = stream;
  let secured = false;
  let gssRefused = false;

  for (;;) {
    if (!secured && options.tls && (await reader.firstByte(options.signal)) === TLS_HANDSHAKE_RECORD) {
      // Direct TLS (sslnegotiation=direct): the bytes already read are the start of the ClientHello.
      const early = reader.release();
      stream = await acceptTls(replayThenPipe(socket, early), options.tls, options.signal, true);
      current.stream = stream;
      reader = new PacketReader(stream);
      secured = true;
      continue;
    }

    const packet: FirstPacket = await reader.next(asStep, options.signal);
    switch (packet.kind) {
      case "ssl-request": {
        if (secured) throw violation("SSLRequest received inside TLS");
        // Bytes after an SSLRequest, before our answer, could be injected by someone on the path.
        if (reader.buffered > 0) throw violation("unexpected data after SSLRequest");
        if (!options.tls) {
          stream.write(NO);
          continue;
        }
        reader.release();
        stream.write(SSL_YES);
        stream = await acceptTls(socket, options.tls, options.signal, false);
        current.stream = stream;
        reader = new PacketReader(stream);
        secured = true;
        continue;
      }
      case "gssenc-request":
        if (secured || gssRefused) throw violation("unexpected GSSENCRequest");
        if (reader.buffered > 0) throw violation("unexpected data after GSSENCRequest");
        gssRefused = true;
        stream.write(NO);
        continue;
      case "cancel":
        reader.release();
        return { kind: "cancel", socket: stream, request: packet };
      case "startup":
        return { kind: "startup", socket: stream, message: packet, tls: secured, pending: reader.release() };
    }
  }
}

function asStep(buf: Buffer): ParseStep<FirstPacket> {
  const r = parseFirstPacket(buf);
  return r.status === "ok" ? { status: "ok", value: r.packet, length: r.length } : r;
}

function violation(what: string): ProxyError {
  return new ProxyError(`protocol violation: ${what}`, "use a PostgreSQL client (libpq, pgjdbc, node-postgres) to connect", SqlState.protocolViolation);
}

function acceptTls(transport: Duplex, context: tls.SecureContext, signal: AbortSignal, direct: boolean): Promise<tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    const secure = new tls.TLSSocket(transport as Socket, {
      isServer: true,
      secureContext: context,
      ALPNProtocols: [POSTGRES_ALPN],
    });
    const cleanup = () => {
      signal.removeEventListener("abort", onAbort);
      secure.off("error", onError);
    };
    const onAbort = () => {
      cleanup();
      secure.destroy();
      reject(signal.reason);
    };
    const onError = (err: Error) => {
      cleanup();
      secure.destroy();
      reject(new ProxyError(`local TLS handshake failed: ${err.message}`, "trust rdsd's local CA (see `rdsd ca`) or use sslmode=require", SqlState.protocolViolation));
    };
    signal.addEventListener("abort", onAbort, { once: true });
    secure.once("error", onError);
    secure.once("secure", () => {
      cleanup();
      // PostgreSQL 17 requires ALPN with direct TLS, so a client cannot mistake another protocol's server for us.
      if (direct && secure.alpnProtocol !== POSTGRES_ALPN) {
        secure.destroy();
        reject(violation("direct TLS without ALPN \"postgresql\""));
        return;
      }
      resolve(secure);
    });
  });
}

/** A duplex over `socket` that first yields `early` (bytes already read) so TLS can start from them. */
function replayThenPipe(socket: Socket, early: Buffer): Duplex {
  const duplex = new Duplex({
    read() {
      socket.resume();
    },
    write(chunk: Buffer, _encoding, callback) {
      socket.write(chunk, callback);
    },
    final(callback) {
      socket.end(callback);
    },
    destroy(err, callback) {
      socket.destroy(err ?? undefined);
      callback(err);
    },
  });
  duplex.push(early);
  socket.on("data", (chunk: Buffer) => {
    if (!duplex.push(chunk)) socket.pause();
  });
  socket.on("end", () => duplex.push(null));
  socket.on("error", (err) => duplex.destroy(err));
  socket.on("close", () => duplex.destroy());
  return duplex;
}
