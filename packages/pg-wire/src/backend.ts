/** Backend (server to client) messages: the few builders a proxy needs, framing, and auth-phase decoding. */

/** Fields of an ErrorResponse or NoticeResponse, by their one-letter codes (protocol "Error and Notice Message Fields"). */
export interface ErrorFields {
  /** Localized severity (S). */
  severity: "ERROR" | "FATAL" | "PANIC" | "WARNING" | "NOTICE" | "DEBUG" | "INFO" | "LOG" | string;
  /** SQLSTATE (C). */
  code: string;
  /** Primary message (M). */
  message: string;
  /** Detail (D). */
  detail?: string;
  /** Hint (H): rdsd puts the fix here, so psql prints it as HINT. */
  hint?: string;
}

const FIELD_CODES: ReadonlyArray<[keyof ErrorFields, string]> = [
  ["severity", "S"],
  ["code", "C"],
  ["message", "M"],
  ["detail", "D"],
  ["hint", "H"],
];

/** Builds an ErrorResponse ('E'). The non-localized severity (V) is sent too, as servers since 9.6 do. */
export function buildErrorResponse(fields: ErrorFields): Buffer {
  const parts: Buffer[] = [];
  for (const [key, code] of FIELD_CODES) {
    const value = fields[key];
    if (value === undefined || value === "") continue;
    parts.push(Buffer.from(code, "latin1"), cstring(value));
    if (key === "severity") parts.push(Buffer.from("V", "latin1"), cstring(value));
  }
  parts.push(Buffer.from([0]));
  return frame("E", Buffer.concat(parts));
}

/** NegotiateProtocolVersion ('v'): the newest minor version supported and the options not recognized. */
export function buildNegotiateProtocolVersion(newestMinor: number, unrecognized: readonly string[]): Buffer {
  const head = Buffer.allocUnsafe(8);
  head.writeUInt32BE(((3 << 16) | newestMinor) >>> 0, 0);
  head.writeUInt32BE(unrecognized.length, 4);
  return frame("v", Buffer.concat([head, ...unrecognized.map(cstring)]));
}

export function frame(type: string, body: Buffer): Buffer {
  const out = Buffer.allocUnsafe(5 + body.length);
  out.write(type, 0, "latin1");
  out.writeUInt32BE(4 + body.length, 1);
  body.copy(out, 5);
  return out;
}

function cstring(text: string): Buffer {
  // A NUL inside a field would end it early on the client: drop such bytes.
  return Buffer.from(text.replaceAll("\0", "") + "\0", "utf8");
}

/** One framed backend message: its type byte and body, plus the whole message's bytes for relaying unchanged. */
export interface BackendFrame {
  type: string;
  body: Buffer;
  raw: Buffer;
}

/** Refuse absurd lengths during login: an auth-phase message is never near this big. */
export const MAX_LOGIN_MESSAGE_LENGTH = 1 << 20;

export type FrameResult =
  | { status: "incomplete" }
  | { status: "ok"; frame: BackendFrame; length: number }
  | { status: "invalid"; reason: string };

/** Cuts one typed message off the start of `buf` (type byte, int32 length including itself, body). */
export function readBackendFrame(buf: Buffer, maxLength = MAX_LOGIN_MESSAGE_LENGTH): FrameResult {
  if (buf.length < 5) return { status: "incomplete" };
  const length = buf.readUInt32BE(1);
  if (length < 4 || length > maxLength) return { status: "invalid", reason: `message length ${length} out of range` };
  const total = 1 + length;
  if (buf.length < total) return { status: "incomplete" };
  const raw = buf.subarray(0, total);
  return { status: "ok", length: total, frame: { type: String.fromCharCode(raw[0]!), body: raw.subarray(5), raw } };
}

/** What the server asks for in an 'R' message during login. */
export type AuthenticationRequest =
  | { kind: "ok" }
  | { kind: "cleartext-password" }
  | { kind: "md5-password"; salt: Buffer }
  | { kind: "sasl"; mechanisms: string[] }
  | { kind: "sasl-continue"; data: Buffer }
  | { kind: "sasl-final"; data: Buffer }
  | { kind: "unsupported"; code: number; name: string };

const UNSUPPORTED_AUTH: Record<number, string> = { 2: "Kerberos V5", 6: "SCM credentials", 7: "GSSAPI", 8: "GSSAPI continue", 9: "SSPI" };

/** Decodes the body of an 'R' message. Returns a reason string when the body is malformed. */
export function decodeAuthenticationRequest(body: Buffer): AuthenticationRequest | string {
  if (body.length < 4) return "authentication request too short";
  const code = body.readUInt32BE(0);
  const rest = body.subarray(4);
  switch (code) {
    case 0:
      return { kind: "ok" };
    case 3:
      return { kind: "cleartext-password" };
    case 5:
      return rest.length === 4 ? { kind: "md5-password", salt: Buffer.from(rest) } : "MD5 request without a 4-byte salt";
    case 10: {
      const mechanisms = rest.toString("utf8").split("\0").filter((m) => m.length > 0);
      return { kind: "sasl", mechanisms };
    }
    case 11:
      return { kind: "sasl-continue", data: Buffer.from(rest) };
    case 12:
      return { kind: "sasl-final", data: Buffer.from(rest) };
    default:
      return { kind: "unsupported", code, name: UNSUPPORTED_AUTH[code] ?? `method ${code}` };
  }
}

/** Decodes the body of an 'E' or 'N' message into its fields (unknown field codes are ignored). */
export function decodeErrorFields(body: Buffer): ErrorFields {
  const fields: ErrorFields = { severity: "", code: "", message: "" };
  let offset = 0;
  while (offset < body.length && body[offset] !== 0) {
    const code = String.fromCharCode(body[offset]!);
    const end = body.indexOf(0, offset + 1);
    if (end < 0) break;
    const value = body.toString("utf8", offset + 1, end);
    for (const [key, c] of FIELD_CODES) if (c === code) fields[key] = value;
    offset = end + 1;
  }
  return fields;
}

/** The value of one field (by its one-letter code) of an 'E' or 'N' body, as raw bytes; undefined when absent. */
export function errorFieldBytes(body: Buffer, code: string): Buffer | undefined {
  const wanted = code.charCodeAt(0);
  let offset = 0;
  while (offset < body.length && body[offset] !== 0) {
    const end = body.indexOf(0, offset + 1);
    if (end < 0) return undefined;
    if (body[offset] === wanted) return body.subarray(offset + 1, end);
    offset = end + 1;
  }
  return undefined;
}

/**
 * The whole ErrorResponse/NoticeResponse message `message` (type byte and length included) with `hint`
 * added: appended on a new line to the hint it has, or as a new hint field. Every other field keeps
 * its bytes and its place. Undefined when the body is not a well-formed field list.
 */
export function withErrorHint(message: Buffer, hint: string): Buffer | undefined {
  const body = message.subarray(5);
  const ours = Buffer.from(hint.replaceAll("\0", ""), "utf8");
  const parts: Buffer[] = [];
  let offset = 0;
  let hinted = false;
  while (offset < body.length && body[offset] !== 0) {
    const end = body.indexOf(0, offset + 1);
    if (end < 0) return undefined;
    if (body[offset] === 0x48 /* H */ && !hinted) {
      parts.push(body.subarray(offset, end), Buffer.from("\n", "latin1"), ours, Buffer.from([0]));
      hinted = true;
    } else {
      parts.push(body.subarray(offset, end + 1));
    }
    offset = end + 1;
  }
  if (offset !== body.length - 1) return undefined;
  if (!hinted) parts.push(Buffer.from("H", "latin1"), ours, Buffer.from([0]));
  parts.push(Buffer.from([0]));
  return frame(message.toString("latin1", 0, 1), Buffer.concat(parts));
}

/** BackendKeyData ('K'): the backend pid and the cancel key (4 bytes in 3.0, up to 256 in 3.2). */
export function decodeBackendKeyData(body: Buffer): { processId: number; secretKey: Buffer } | string {
  if (body.length < 8) return "BackendKeyData too short";
  return { processId: body.readUInt32BE(0), secretKey: Buffer.from(body.subarray(4)) };
}

/** ParameterStatus ('S') body: name\0value\0. Undefined when malformed. */
export function decodeParameterStatus(body: Buffer): { name: string; value: string } | undefined {
  const nameEnd = body.indexOf(0);
  if (nameEnd <= 0 || nameEnd === body.length - 1 || body[body.length - 1] !== 0) return undefined;
  return { name: body.toString("utf8", 0, nameEnd), value: body.toString("utf8", nameEnd + 1, body.length - 1) };
}

/** AuthenticationOk ('R', code 0). */
export function buildAuthenticationOk(): Buffer {
  return frame("R", Buffer.from([0, 0, 0, 0]));
}

/** ParameterStatus ('S'): a reportable setting's name and current value. */
export function buildParameterStatus(name: string, value: string): Buffer {
  return frame("S", Buffer.concat([cstring(name), cstring(value)]));
}

/** BackendKeyData ('K'): the pid and cancel key a client is to cancel with. */
export function buildBackendKeyData(processId: number, secretKey: Buffer): Buffer {
  const body = Buffer.allocUnsafe(4 + secretKey.length);
  body.writeUInt32BE(processId >>> 0, 0);
  secretKey.copy(body, 4);
  return frame("K", body);
}

/** ReadyForQuery ('Z') with a transaction status. */
export function buildReadyForQuery(status: "I" | "T" | "E"): Buffer {
  return frame("Z", Buffer.from(status, "latin1"));
}
