import net from "node:net";
import tls from "node:tls";
import { buildErrorResponse, frame, parseFirstPacket, SqlState, startupParameter, type StartupMessage } from "@rdsd/pg-wire";

/** Stands in for an RDS instance's front door: TLS for its hostnames, then an IAM token check. */
export interface RdsFrontOptions {
  /** Certificate valid for every RDS-shaped hostname served. */
  certificate: { certPem: string; keyPem: string };
  /** The token's host must be the TLS server name the client asked for (SNI); this is its port. */
  port: number;
  /** Returns why a token is refused, or null. */
  checkToken(token: string, host: string, user: string): string | null;
  /** Where the real PostgreSQL listens (a Unix socket path): reached only after the token is accepted. */
  postgresSocket: string;
  log?: (line: string) => void;
}

export interface RdsFront {
  port: number;
  close(): Promise<void>;
}

const STARTUP_TIMEOUT_MS = 10_000;

/**
 * The demo's RDS: SSLRequest answered `S` (non-TLS refused, as with rds.force_ssl), TLS with a
 * certificate for the RDS names, AuthenticationCleartextPassword, then the password must be an IAM
 * token signed for the SNI host, this port and the startup user. Only then is the client's startup
 * forwarded, as is, to PostgreSQL on its private socket, and bytes relayed both ways.
 */
export async function startRdsFront(options: RdsFrontOptions): Promise<RdsFront> {
  const context = tls.createSecureContext({ cert: options.certificate.certPem, key: options.certificate.keyPem, minVersion: "TLSv1.2" });
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
    socket.on("error", () => socket.destroy());
    socket.setTimeout(STARTUP_TIMEOUT_MS, () => socket.destroy());
    void serve(socket, context, options).catch(() => socket.destroy());
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve());
  });
  return {
    port: (server.address() as net.AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

async function serve(socket: net.Socket, context: tls.SecureContext, options: RdsFrontOptions): Promise<void> {
  const first = await readStartupPacket(socket);
  // A CancelRequest is served before any authentication, with or without TLS, as PostgreSQL and RDS do.
  if (first.kind === "cancel") return forwardCancel(socket, first.raw, options);
  if (first.kind !== "ssl-request") return refuse(socket, SqlState.invalidAuthorization, "no pg_hba.conf entry: SSL is required (rds.force_ssl)");
  socket.write("S");
  const secure = new tls.TLSSocket(socket, { isServer: true, secureContext: context });
  secure.on("error", () => secure.destroy());
  await new Promise<void>((resolve, reject) => {
    secure.once("secure", resolve);
    secure.once("error", reject);
  });
  const host = (secure as tls.TLSSocket & { servername?: string | false }).servername || "";
  const startup = await readStartupPacket(secure);
  if (startup.kind === "cancel") return forwardCancel(secure, startup.raw, options);
  if (startup.kind !== "startup") return refuse(secure, SqlState.protocolViolation, "expected a startup message");
  const user = startupParameter(startup.message, "user") ?? "";
  secure.write(frame("R", int32(3))); // AuthenticationCleartextPassword, as RDS asks for IAM users
  const password = await readPassword(secure);
  const problem = options.checkToken(password, host, user);
  if (problem) {
    options.log?.(`refused a login as ${user} to ${host}: ${problem}`);
    return refuse(secure, SqlState.invalidPassword, `PAM authentication failed for user "${user}"`, problem);
  }
  options.log?.(`IAM token accepted for ${user} at ${host}`);
  socket.setTimeout(0);
  const upstream = net.connect(options.postgresSocket);
  upstream.on("error", () => secure.destroy());
  await new Promise<void>((resolve) => upstream.once("connect", resolve));
  upstream.write(startup.raw);
  secure.pipe(upstream);
  upstream.pipe(secure);
  secure.once("close", () => upstream.destroy());
  upstream.once("close", () => secure.destroy());
}

/**
 * Hands a CancelRequest (the client's bytes, whatever their key length) to PostgreSQL on its socket, which
 * cancels the query of the backend it names; then both connections close, as the protocol has it.
 */
function forwardCancel(client: net.Socket | tls.TLSSocket, raw: Buffer, options: RdsFrontOptions): void {
  const upstream = net.connect(options.postgresSocket);
  upstream.on("error", () => upstream.destroy());
  upstream.once("connect", () => upstream.end(raw));
  upstream.once("close", () => client.end());
  options.log?.("cancel request passed to PostgreSQL");
}

type Packet = { kind: "ssl-request" | "other" } | { kind: "startup"; message: StartupMessage; raw: Buffer } | { kind: "cancel"; raw: Buffer };

function readStartupPacket(stream: net.Socket | tls.TLSSocket): Promise<Packet> {
  return readUntil<Packet>(stream, (buf) => {
    const result = parseFirstPacket(buf);
    if (result.status === "incomplete") return undefined;
    if (result.status === "invalid") throw new Error(result.reason);
    const packet = result.packet;
    const raw = Buffer.from(buf.subarray(0, result.length));
    if (packet.kind === "startup") return { value: { kind: "startup", message: packet, raw }, used: result.length };
    if (packet.kind === "cancel") return { value: { kind: "cancel", raw }, used: result.length };
    return { value: { kind: packet.kind === "ssl-request" ? "ssl-request" : "other" }, used: result.length };
  });
}

function readPassword(stream: tls.TLSSocket): Promise<string> {
  return readUntil(stream, (buf) => {
    if (buf.length < 5) return undefined;
    if (buf[0] !== 0x70 /* p */) throw new Error("expected a password message");
    const length = buf.readUInt32BE(1);
    if (length < 5 || length > 16_384) throw new Error("password message of a bad length");
    if (buf.length < 1 + length) return undefined;
    return { value: buf.subarray(5, length).toString("utf8").replace(/\0$/, ""), used: 1 + length };
  });
}

/** Reads until `parse` finds a whole packet; bytes past it are pushed back for the next reader. */
function readUntil<T>(stream: net.Socket | tls.TLSSocket, parse: (buf: Buffer) => { value: T; used: number } | undefined): Promise<T> {
  return new Promise((resolve, reject) => {
    let buffered = Buffer.alloc(0);
    const done = (err: Error | undefined, value?: T, rest?: Buffer) => {
      stream.off("data", onData);
      stream.off("close", onClose);
      stream.pause();
      if (rest && rest.length > 0) stream.unshift(rest);
      if (err) reject(err);
      else resolve(value as T);
    };
    const onClose = () => done(new Error("closed during startup"));
    const onData = (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk]);
      try {
        const found = parse(buffered);
        if (found) done(undefined, found.value, buffered.subarray(found.used));
      } catch (err) {
        done(err as Error);
      }
    };
    stream.on("data", onData);
    stream.once("close", onClose);
    stream.resume();
  });
}

function refuse(stream: net.Socket | tls.TLSSocket, code: string, message: string, detail?: string): void {
  stream.end(buildErrorResponse({ severity: "FATAL", code, message, ...(detail ? { detail } : {}) }));
}

function int32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
}
