import type { Duplex } from "node:stream";
import tls from "node:tls";
import { serialize } from "pg-protocol";
import {
  buildSslRequest,
  buildStartupMessage,
  decodeAuthenticationRequest,
  decodeBackendKeyData,
  decodeParameterStatus,
  decodeErrorFields,
  md5PasswordAnswer,
  readBackendFrame,
  ScramClient,
  SqlState,
  type AuthenticationRequest,
  type BackendFrame,
  type StartupParameter,
} from "@rdsd/pg-wire";
import { ProxyError } from "./errors.js";
import { InvalidPacketError, PacketReader, StreamClosedError, type ParseStep } from "./packet-reader.js";
import type { UpstreamAuth, UpstreamSecret } from "./upstream-auth.js";

/** What the upstream connection must be, independent of how its bytes travel. */
export interface UpstreamTarget {
  /** The real RDS hostname: TLS verifies the certificate against it whatever address was dialed. */
  host: string;
  port: number;
  /** The database user the proxy logs in as. */
  user: string;
  /** Trusted CA certificates (PEM) for verify-full. */
  ca: string | Buffer | Array<string | Buffer>;
  auth: UpstreamAuth;
}

export interface UpstreamSession {
  socket: tls.TLSSocket;
  /** The server's messages from AuthenticationOk to ReadyForQuery (and any NegotiateProtocolVersion), unchanged. */
  greeting: Buffer;
  /** The real backend's cancel key, for forwarding CancelRequests. */
  backendKey: { processId: number; secretKey: Buffer } | undefined;
  /** The server's reportable settings from its ParameterStatus messages, in the order sent. */
  parameters: Map<string, string>;
  /** The server's NegotiateProtocolVersion, when it sent one (a reused connection's next client is told the same). */
  negotiation: Buffer | undefined;
  /** The greeting ended with ReadyForQuery (not with the server's FATAL). */
  ready: boolean;
  /** Bytes read past the greeting; belong to the client. */
  pending: Buffer;
  /** What the server asked for first ("cleartext-password" for RDS IAM; "ok" when it asked for nothing). */
  asked: AuthenticationRequest["kind"];
  /** The password went in the same write as the startup message. */
  sentEarly: boolean;
}

/** Opens TLS to the server on an already-connected stream, refusing anything short of verify-full. */
export async function secureUpstream(stream: Duplex, target: Pick<UpstreamTarget, "host" | "ca">, signal: AbortSignal): Promise<tls.TLSSocket> {
  const reader = new PacketReader(stream);
  stream.write(buildSslRequest());
  const answer = await readOrExplain(reader, signal, firstByteStep);
  if (answer !== 0x53 /* S */) {
    reader.release();
    throw new ProxyError(
      `the server at ${target.host} refused TLS (answered ${describeByte(answer)} to SSLRequest)`,
      "rdsd only logs in over TLS verified against the RDS hostname; enable SSL on the server (RDS always offers it), or check that tunnel.address points at PostgreSQL",
      SqlState.unableToConnect,
    );
  }
  // Anything after 'S' and before the TLS handshake was not sent by a real server (CVE-2021-23222).
  if (reader.buffered > 0) {
    reader.release();
    throw new ProxyError("unexpected data from the server after its TLS answer", "something on the path to the database is tampering with the connection", SqlState.protocolViolation);
  }
  reader.release();
  return handshake(stream, target, signal);
}

/**
 * One TLS context per target CA, built on first use: building one parses every CA certificate (about 20 ms
 * for the RDS bundle's ~120), which per connection would dominate login time. Keyed by the target object,
 * and rebuilt if its `ca` is replaced.
 */
const upstreamContexts = new WeakMap<object, { ca: UpstreamTarget["ca"]; context: tls.SecureContext }>();

function upstreamContext(target: Pick<UpstreamTarget, "ca">): tls.SecureContext {
  const cached = upstreamContexts.get(target);
  if (cached && cached.ca === target.ca) return cached.context;
  const context = tls.createSecureContext({ ca: target.ca, minVersion: "TLSv1.2" });
  upstreamContexts.set(target, { ca: target.ca, context });
  return context;
}

function handshake(stream: Duplex, target: Pick<UpstreamTarget, "host" | "ca">, signal: AbortSignal): Promise<tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    // verify-full: the shared context carries only the trusted CAs; the name check is per connection.
    const socket = tls.connect({
      socket: stream,
      servername: target.host,
      secureContext: upstreamContext(target),
      rejectUnauthorized: true,
    });
    const onAbort = () => {
      socket.destroy();
      reject(new ProxyError(`TLS handshake with ${target.host} timed out`, "check the tunnel to the database (`rdsd status`)", SqlState.unableToConnect));
    };
    signal.addEventListener("abort", onAbort, { once: true });
    socket.once("error", (err) => {
      signal.removeEventListener("abort", onAbort);
      socket.destroy();
      reject(err instanceof ProxyError ? err : tlsFailure(target.host, err as NodeJS.ErrnoException));
    });
    socket.once("secureConnect", () => {
      signal.removeEventListener("abort", onAbort);
      socket.removeAllListeners("error");
      // Belt and braces: rejectUnauthorized already refuses an unverified peer.
      if (!socket.authorized) {
        socket.destroy();
        reject(new ProxyError(`TLS: certificate of ${target.host} not verified`, "check tls.ca for this target", SqlState.unableToConnect));
        return;
      }
      resolve(socket);
    });
  });
}

function tlsFailure(host: string, err: NodeJS.ErrnoException): ProxyError {
  const code = err.code ?? "";
  if (code === "ERR_TLS_CERT_ALTNAME_INVALID") {
    return new ProxyError(`TLS: certificate does not match ${host}`, "the target's host must be the RDS endpoint name on its certificate (not an IP or a CNAME)", SqlState.unableToConnect, err.message);
  }
  if (/UNABLE_TO_VERIFY|SELF_SIGNED|UNABLE_TO_GET_ISSUER|CERT_UNTRUSTED|CERT_SIGNATURE_FAILURE/.test(code)) {
    return new ProxyError(
      `TLS: certificate of ${host} is not signed by a trusted CA (${code})`,
      "set tls.ca to the CA bundle that signed the server's certificate (`rds` for RDS; RDS Proxy endpoints use public Amazon roots)",
      SqlState.unableToConnect,
    );
  }
  if (code === "CERT_HAS_EXPIRED" || code === "CERT_NOT_YET_VALID") {
    return new ProxyError(`TLS: certificate of ${host} is not valid now (${code})`, "check this machine's clock, then the server's certificate rotation", SqlState.unableToConnect);
  }
  return new ProxyError(`TLS handshake with ${host} failed: ${err.message}`, "check the tunnel to the database and tls settings for this target", SqlState.unableToConnect);
}

function firstByteStep(buf: Buffer): ParseStep<number> {
  return buf.length === 0 ? { status: "incomplete" } : { status: "ok", value: buf[0]!, length: 1 };
}

function describeByte(b: number): string {
  return b >= 0x20 && b < 0x7f ? `'${String.fromCharCode(b)}'` : `0x${b.toString(16)}`;
}

/**
 * The server asked for something other than the cleartext password that was sent early with the startup
 * (SCRAM, MD5, or nothing at all): the connection is spoiled (the server reads the early password as its
 * answer and fails, or as an invalid message after login) and must be closed; the login is retried on a
 * new connection without sending anything early. Not a ProxyError: no client is ever told about it.
 */
export class EarlyPasswordUnwanted extends Error {
  constructor(readonly asked: AuthenticationRequest["kind"]) {
    super(`the server asked for ${describeAuth(asked)}, not for the cleartext password sent with the startup`);
    this.name = "EarlyPasswordUnwanted";
  }
}

export interface LoginOptions {
  /**
   * Send the password in the same write as the startup message, before the server asks: saves a round trip
   * when the server is known to ask for a cleartext password (RDS IAM). Default false: wait to be asked.
   */
  sendPasswordEarly?: boolean;
}

/**
 * Logs in over a verified TLS socket: sends the client's startup parameters (user replaced), answers the
 * server's authentication request with the target's secret, and collects the greeting up to ReadyForQuery.
 * The secret is awaited only when the server asks for it (or, with sendPasswordEarly, right before the
 * startup), and only ever written to this socket, after its certificate was verified against the RDS host.
 */
export async function loginUpstream(
  socket: tls.TLSSocket,
  target: UpstreamTarget,
  startup: { majorVersion: number; minorVersion: number; parameters: StartupParameter[] },
  secret: Promise<UpstreamSecret>,
  signal: AbortSignal,
  options: LoginOptions = {},
): Promise<UpstreamSession> {
  if (!socket.authorized) throw new Error("refusing to log in over an unverified TLS connection");
  const reader = new PacketReader(socket);
  const startupMessage = buildStartupMessage(startup.majorVersion, startup.minorVersion, startup.parameters);

  const greeting: Buffer[] = [];
  let negotiation: Buffer | undefined;
  let scram: ScramClient | undefined;
  let provenance = "";
  const readSecret = async () => {
    const s = await secret;
    provenance = s.provenance;
    return s.value;
  };
  /** What the server asked for first ("ok" when it asked for nothing). */
  let asked: AuthenticationRequest["kind"] | undefined;
  const sentEarly = options.sendPasswordEarly === true;
  if (sentEarly) {
    // One write, one TLS record: the server reads the password as soon as it asks for it. The certificate
    // of this socket was verified above (verify-full), before anything was written to it.
    const password = await readSecret();
    socket.write(Buffer.concat([startupMessage, serialize.password(password)]));
  } else {
    socket.write(startupMessage);
  }

  // Authentication phase: until AuthenticationOk.
  for (;;) {
    const frame = await readOrExplain(reader, signal, asFrameStep);
    if (frame.type === "v" || frame.type === "N") {
      greeting.push(frame.raw); // NegotiateProtocolVersion and notices are the client's to see
      if (frame.type === "v") negotiation = Buffer.from(frame.raw);
      continue;
    }
    if (frame.type === "E") throw serverRefusal(frame, target, provenance);
    if (frame.type !== "R") throw unexpected(frame);
    const request = decodeAuthenticationRequest(frame.body);
    if (typeof request === "string") throw new ProxyError(`malformed authentication request from the server: ${request}`, "check that the target is PostgreSQL", SqlState.protocolViolation);

    const first = asked === undefined;
    asked ??= request.kind;
    if (sentEarly && first) {
      // PostgreSQL reads a password only after asking for one, so whatever the early password causes comes
      // after this first request: an ErrorResponse before it (pg_hba reject, too many clients) is the server's
      // own refusal. Asked for anything but a cleartext password, the early one spoiled this connection.
      if (request.kind !== "cleartext-password") throw new EarlyPasswordUnwanted(request.kind);
      continue; // already answered
    }

    if (request.kind === "ok") {
      greeting.push(frame.raw);
      break;
    }
    if (target.auth.method === "iam" && request.kind !== "cleartext-password") {
      throw new ProxyError(
        `database user "${target.user}" does not use IAM authentication: the server asked for ${describeAuth(request.kind)} instead of a token`,
        `grant the role to the user: GRANT rds_iam TO "${target.user}";  (or configure auth: { password: ... } for this target)`,
        SqlState.invalidAuthorization,
      );
    }
    switch (request.kind) {
      case "cleartext-password":
        socket.write(serialize.password(await readSecret()));
        break;
      case "md5-password":
        socket.write(serialize.password(md5PasswordAnswer(target.user, await readSecret(), request.salt)));
        break;
      case "sasl":
        if (!request.mechanisms.includes("SCRAM-SHA-256")) {
          throw new ProxyError(`the server offers only ${request.mechanisms.join(", ")}`, "rdsd supports SCRAM-SHA-256, MD5 and cleartext passwords", SqlState.featureNotSupported);
        }
        scram = new ScramClient(await readSecret());
        socket.write(serialize.sendSASLInitialResponseMessage(scram.mechanism, scram.clientFirstMessage()));
        break;
      case "sasl-continue":
        if (!scram) throw unexpected(frame);
        socket.write(serialize.sendSCRAMClientFinalMessage(scram.clientFinalMessage(request.data.toString("utf8"))));
        break;
      case "sasl-final":
        if (!scram) throw unexpected(frame);
        try {
          scram.verifyServerFinal(request.data.toString("utf8"));
        } catch (err) {
          throw new ProxyError(`the server failed SCRAM verification: ${(err as Error).message}`, "something is impersonating the database", SqlState.invalidAuthorization);
        }
        break;
      case "unsupported":
        throw new ProxyError(`the server asked for ${request.name} authentication`, "rdsd supports RDS IAM, SCRAM-SHA-256, MD5 and cleartext passwords", SqlState.featureNotSupported);
    }
  }

  // After AuthenticationOk: relay everything unchanged up to ReadyForQuery, noting the backend's cancel key.
  let backendKey: UpstreamSession["backendKey"];
  const parameters = new Map<string, string>();
  for (;;) {
    const frame = await readOrExplain(reader, signal, asFrameStep);
    greeting.push(frame.raw);
    if (frame.type === "K") {
      const key = decodeBackendKeyData(frame.body);
      if (typeof key !== "string") backendKey = key;
    } else if (frame.type === "S") {
      const setting = decodeParameterStatus(frame.body);
      if (setting) parameters.set(setting.name, setting.value);
    }
    // A FATAL after AuthenticationOk (database does not exist, too many connections) goes to the client as the server sent it.
    if (frame.type === "Z" || frame.type === "E") {
      return { socket, greeting: Buffer.concat(greeting), backendKey, parameters, negotiation, ready: frame.type === "Z", pending: reader.release(), asked: asked!, sentEarly };
    }
  }
}

function asFrameStep(buf: Buffer): ParseStep<BackendFrame> {
  const r = readBackendFrame(buf);
  return r.status === "ok" ? { status: "ok", value: r.frame, length: r.length } : r;
}

async function readOrExplain<T>(reader: PacketReader, signal: AbortSignal, parse: (buf: Buffer) => ParseStep<T>): Promise<T> {
  try {
    return await reader.next(parse, signal);
  } catch (err) {
    if (err instanceof StreamClosedError) {
      // A tunnel that closes a stream says why (bastion gone, channel closed): that is the better story.
      if (err.cause instanceof ProxyError) throw err.cause;
      throw new ProxyError("the server closed the connection during login", "check the server's log, and `rdsd status` for the tunnel", SqlState.connectionFailure);
    }
    if (err instanceof InvalidPacketError) {
      throw new ProxyError(`the server sent an invalid message during login: ${err.message}`, "check that the target is PostgreSQL", SqlState.protocolViolation);
    }
    if (signal.aborted) {
      throw new ProxyError("the server did not complete the login in time", "check the server's load and `rdsd status` for the tunnel", SqlState.unableToConnect);
    }
    throw err;
  }
}

function serverRefusal(frame: BackendFrame, target: UpstreamTarget, provenance: string): ProxyError {
  const fields = decodeErrorFields(frame.body);
  const authFailed = fields.code === "28000" || fields.code === "28P01";
  if (authFailed && target.auth.method === "iam") {
    return new ProxyError(
      `the server rejected the IAM token: ${fields.message}`,
      `check that user "${target.user}" has the rds_iam role, that the IAM policy allows rds-db:connect for it, and that this machine's clock is right`,
      fields.code,
      provenance || undefined,
    );
  }
  if (authFailed) {
    return new ProxyError(`the server rejected the password: ${fields.message}`, "check the password source configured for this target (auth.password)", fields.code);
  }
  return new ProxyError(`the server refused the login: ${fields.message}`, fields.hint ?? "see the server's message above", fields.code || SqlState.connectionFailure, fields.detail);
}

function unexpected(frame: BackendFrame): ProxyError {
  return new ProxyError(`unexpected message '${frame.type}' from the server during login`, "check that the target is PostgreSQL", SqlState.protocolViolation);
}

function describeAuth(kind: string): string {
  return kind === "md5-password" ? "an MD5 password" : kind === "sasl" ? "SCRAM-SHA-256" : kind === "ok" ? "no password at all" : kind;
}
