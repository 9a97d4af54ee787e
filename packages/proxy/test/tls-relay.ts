import net from "node:net";
import tls from "node:tls";
import { buildSslRequest, decodeErrorFields, readBackendFrame } from "@rdsd/pg-wire";
import { tcpServer } from "@rdsd/testkit";

/** One protocol message the relay passed on, in the order the relay received them (both directions). */
export interface SeenMessage {
  from: "proxy" | "server";
  /**
   * "startup" for the StartupMessage; otherwise the type byte, with the code for an authentication request
   * ("R3": cleartext password, "R5": MD5, "R10": SASL, "R0": ok) and the SQLSTATE for an error ("E08P01").
   */
  label: string;
  /** Which decrypted read it came in: the proxy's messages with the same number arrived in one TLS record. */
  read: number;
}

export interface RelayedConnection {
  messages: SeenMessage[];
  /** Everything the proxy sent after TLS, decrypted. */
  fromProxy(): Buffer;
  /** Resolves once both sides have closed (the server's last words, e.g. its FATAL, are recorded by then). */
  closed: Promise<void>;
}

export interface RecordingRelay {
  port: number;
  /** One per connection the proxy opened, in order. */
  connections: RelayedConnection[];
  close(): Promise<void>;
}

export interface RelayOptions {
  /** The certificate the relay shows the proxy: one the proxy trusts for its upstream host (the RDS-like one). */
  certPem: string;
  keyPem: string;
  /** The real server behind, reached with TLS verified against `servername` and `ca`. */
  serverPort: number;
  servername: string;
  ca: string;
}

/**
 * A man in the middle that the proxy trusts (it holds the server's certificate): it ends the proxy's TLS,
 * opens its own to the real PostgreSQL, passes every byte on unchanged and records the decrypted messages of
 * both directions in the order it received them. So a test can see when the proxy sent what: whether its
 * password came in the same TLS record as its startup, before the server had asked for anything.
 */
export async function recordingTlsRelay(options: RelayOptions): Promise<RecordingRelay> {
  const connections: RelayedConnection[] = [];
  const secureContext = tls.createSecureContext({ cert: options.certPem, key: options.keyPem });
  const server = await tcpServer((socket) => {
    const messages: SeenMessage[] = [];
    const proxyBytes: Buffer[] = [];
    let reads = 0;
    const fromProxy = messageSplitter("proxy", messages, true);
    const fromServer = messageSplitter("server", messages, false);
    let proxySide: tls.TLSSocket | undefined;
    let serverSide: tls.TLSSocket | undefined;
    const toServer: Buffer[] = [];
    let proxyClosed!: () => void;
    let serverClosed!: () => void;
    const closed = Promise.all([new Promise<void>((r) => (proxyClosed = r)), new Promise<void>((r) => (serverClosed = r))]).then(() => {});
    connections.push({ messages, fromProxy: () => Buffer.concat(proxyBytes), closed });

    // The proxy's SSLRequest (it waits for the answer, so nothing else comes with it), then TLS as the server.
    let head = Buffer.alloc(0);
    const onHead = (chunk: Buffer) => {
      head = Buffer.concat([head, chunk]);
      if (head.length < 8) return;
      socket.off("data", onHead);
      socket.write("S");
      proxySide = new tls.TLSSocket(socket, { isServer: true, secureContext });
      proxySide.on("error", () => {});
      proxySide.on("data", (chunk: Buffer) => {
        proxyBytes.push(chunk);
        fromProxy(chunk, ++reads);
        if (serverSide) serverSide.write(chunk);
        else toServer.push(chunk);
      });
      // The proxy closing first still lets the server answer what it was sent: only half-close the server.
      proxySide.once("close", () => {
        serverSide?.end();
        proxyClosed();
      });
    };
    socket.on("data", onHead);
    socket.once("close", () => {
      if (!proxySide) proxyClosed();
    });

    const upstream = net.connect(options.serverPort, "127.0.0.1");
    upstream.on("error", () => {});
    upstream.once("close", () => {
      if (!serverSide) serverClosed();
    });
    upstream.write(buildSslRequest());
    upstream.once("data", (answer: Buffer) => {
      if (answer.toString("latin1") !== "S") {
        upstream.destroy();
        socket.destroy();
        return;
      }
      const secured = tls.connect({ socket: upstream, servername: options.servername, ca: options.ca });
      secured.on("error", () => {});
      secured.once("secureConnect", () => {
        serverSide = secured;
        for (const chunk of toServer.splice(0)) secured.write(chunk);
        if (proxySide?.destroyed) secured.end();
      });
      secured.on("data", (chunk: Buffer) => {
        fromServer(chunk, ++reads);
        if (proxySide && !proxySide.destroyed) proxySide.write(chunk);
      });
      secured.once("close", () => {
        proxySide?.end();
        serverClosed();
      });
    });
  });
  return { port: server.port, connections, close: server.close };
}

/** Splits one direction's decrypted bytes into labelled messages (the proxy's first is its StartupMessage). */
function messageSplitter(from: SeenMessage["from"], into: SeenMessage[], startsWithStartup: boolean): (chunk: Buffer, read: number) => void {
  let buffer = Buffer.alloc(0);
  let startup = startsWithStartup;
  return (chunk, read) => {
    buffer = Buffer.concat([buffer, chunk]);
    for (;;) {
      if (startup) {
        if (buffer.length < 4 || buffer.length < buffer.readInt32BE(0)) return;
        buffer = buffer.subarray(buffer.readInt32BE(0));
        startup = false;
        into.push({ from, label: "startup", read });
        continue;
      }
      const step = readBackendFrame(buffer, Number.MAX_SAFE_INTEGER);
      if (step.status !== "ok") return;
      buffer = buffer.subarray(step.length);
      const { type, body } = step.frame;
      const label = type === "R" && from === "server" ? `R${body.readUInt32BE(0)}` : type === "E" ? `E${decodeErrorFields(body).code}` : type;
      into.push({ from, label, read });
    }
  };
}

/**
 * The login as the relay saw it, up to the server's first ReadyForQuery or error: ">" for the proxy's
 * messages, "<" for the server's; ParameterStatus messages left out (their number depends on the server).
 */
export function loginTrace(connection: RelayedConnection): string[] {
  const trace: string[] = [];
  for (const m of connection.messages) {
    if (m.label === "S" && m.from === "server") continue;
    trace.push(`${m.from === "proxy" ? ">" : "<"}${m.label}`);
    if (m.from === "server" && (m.label === "Z" || m.label.startsWith("E"))) break;
  }
  return trace;
}
