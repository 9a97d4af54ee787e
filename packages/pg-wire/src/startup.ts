import {
  CANCEL_REQUEST_CODE,
  GSSENC_REQUEST_CODE,
  MAX_CANCEL_KEY_LENGTH,
  MAX_STARTUP_PACKET_LENGTH,
  MIN_CANCEL_KEY_LENGTH,
  MIN_STARTUP_PACKET_LENGTH,
  SSL_REQUEST_CODE,
} from "./codes.js";

/** One startup parameter, kept as the client's raw bytes so it can be forwarded byte for byte. */
export interface StartupParameter {
  name: Buffer;
  value: Buffer;
}

export interface StartupMessage {
  kind: "startup";
  majorVersion: number;
  minorVersion: number;
  /** In the client's order. */
  parameters: StartupParameter[];
}

export interface CancelRequest {
  kind: "cancel";
  processId: number;
  /** 4 bytes (protocol 3.0) or up to 256 bytes (3.2). */
  secretKey: Buffer;
  /** The whole packet as received, to be forwarded unchanged. */
  raw: Buffer;
}

export type FirstPacket = { kind: "ssl-request" } | { kind: "gssenc-request" } | CancelRequest | StartupMessage;

export type ParseResult =
  | { status: "incomplete" }
  | { status: "ok"; packet: FirstPacket; length: number }
  | { status: "invalid"; reason: string };

/**
 * Parses one packet of the untyped startup phase (SSLRequest, GSSENCRequest, CancelRequest, StartupMessage)
 * from the start of `buf`. Pure: never throws on hostile bytes, reports what it could not accept.
 */
export function parseFirstPacket(buf: Buffer): ParseResult {
  if (buf.length < 4) return { status: "incomplete" };
  const length = buf.readUInt32BE(0);
  if (length < MIN_STARTUP_PACKET_LENGTH || length > MAX_STARTUP_PACKET_LENGTH) {
    return { status: "invalid", reason: `invalid startup packet length ${length} (allowed ${MIN_STARTUP_PACKET_LENGTH}-${MAX_STARTUP_PACKET_LENGTH})` };
  }
  if (buf.length < length) return { status: "incomplete" };
  const packet = buf.subarray(0, length);
  const code = packet.readUInt32BE(4);

  switch (code) {
    case SSL_REQUEST_CODE:
      return length === 8 ? { status: "ok", packet: { kind: "ssl-request" }, length } : invalidLength("SSLRequest", length);
    case GSSENC_REQUEST_CODE:
      return length === 8 ? { status: "ok", packet: { kind: "gssenc-request" }, length } : invalidLength("GSSENCRequest", length);
    case CANCEL_REQUEST_CODE:
      return parseCancel(packet);
  }

  const majorVersion = code >>> 16;
  const minorVersion = code & 0xffff;
  if (majorVersion !== 3) {
    return { status: "invalid", reason: `unsupported frontend protocol ${majorVersion}.${minorVersion}: rdsd speaks protocol 3` };
  }
  const parameters = parseParameters(packet.subarray(8));
  if (typeof parameters === "string") return { status: "invalid", reason: parameters };
  return { status: "ok", packet: { kind: "startup", majorVersion, minorVersion, parameters }, length };
}

function invalidLength(what: string, length: number): ParseResult {
  return { status: "invalid", reason: `${what} with invalid length ${length}` };
}

function parseCancel(packet: Buffer): ParseResult {
  const keyLength = packet.length - 12;
  if (keyLength < MIN_CANCEL_KEY_LENGTH || keyLength > MAX_CANCEL_KEY_LENGTH) {
    return invalidLength("CancelRequest", packet.length);
  }
  return {
    status: "ok",
    length: packet.length,
    packet: {
      kind: "cancel",
      processId: packet.readUInt32BE(8),
      secretKey: Buffer.from(packet.subarray(12)),
      raw: Buffer.from(packet),
    },
  };
}

/** name\0value\0 ... \0 — the list must end with an empty name. Returns a reason string when malformed. */
function parseParameters(body: Buffer): StartupParameter[] | string {
  const parameters: StartupParameter[] = [];
  let offset = 0;
  for (;;) {
    const nameEnd = body.indexOf(0, offset);
    if (nameEnd < 0) return "startup packet parameters are not terminated";
    if (nameEnd === offset) {
      // The terminating empty name must be the last byte.
      if (nameEnd !== body.length - 1) return "startup packet has bytes after the parameter list";
      return parameters;
    }
    const valueEnd = body.indexOf(0, nameEnd + 1);
    if (valueEnd < 0) return "startup packet parameter has no value";
    parameters.push({
      name: Buffer.from(body.subarray(offset, nameEnd)),
      value: Buffer.from(body.subarray(nameEnd + 1, valueEnd)),
    });
    offset = valueEnd + 1;
  }
}

/** Looks a parameter up by its (ASCII) name. */
export function startupParameter(message: StartupMessage, name: string): string | undefined {
  const found = message.parameters.find((p) => p.name.toString("latin1") === name);
  return found?.value.toString("utf8");
}

/** Builds a StartupMessage from raw parameters, keeping their order and bytes. */
export function buildStartupMessage(majorVersion: number, minorVersion: number, parameters: readonly StartupParameter[]): Buffer {
  let length = 4 + 4 + 1;
  for (const p of parameters) length += p.name.length + 1 + p.value.length + 1;
  const out = Buffer.allocUnsafe(length);
  out.writeUInt32BE(length, 0);
  out.writeUInt32BE(((majorVersion << 16) | minorVersion) >>> 0, 4);
  let offset = 8;
  for (const p of parameters) {
    offset += p.name.copy(out, offset);
    out[offset++] = 0;
    offset += p.value.copy(out, offset);
    out[offset++] = 0;
  }
  out[offset] = 0;
  return out;
}

/** The 8-byte SSLRequest. */
export function buildSslRequest(): Buffer {
  const out = Buffer.allocUnsafe(8);
  out.writeUInt32BE(8, 0);
  out.writeUInt32BE(SSL_REQUEST_CODE, 4);
  return out;
}

/** A parameter given as text, encoded as UTF-8 (names are ASCII). */
export function textParameter(name: string, value: string): StartupParameter {
  return { name: Buffer.from(name, "latin1"), value: Buffer.from(value, "utf8") };
}

/**
 * One word of the startup `options` value, escaped the way the server splits it (pg_split_opts): words
 * are separated by whitespace, and a backslash makes the next character literal. So spaces (any
 * whitespace) and backslashes in `text` get a backslash in front.
 */
export function escapeOptionWord(text: string): string {
  return text.replace(/[\\\s]/g, (c) => `\\${c}`);
}

/** `-c NAME=VALUE` for each setting, escaped for the startup `options` value, in order. */
export function settingOptions(settings: Readonly<Record<string, string>>): string {
  return Object.entries(settings)
    .map(([name, value]) => `-c ${escapeOptionWord(`${name}=${value}`)}`)
    .join(" ");
}

/**
 * The client's `options` bytes, then ours after a space. A trailing unpaired backslash would escape that space
 * and glue our first word to the client's last; the server drops such a backslash anyway, so it goes.
 */
export function appendOptions(client: Buffer, settings: string): Buffer {
  let trailing = 0;
  while (trailing < client.length && client[client.length - 1 - trailing] === 0x5c) trailing++;
  const kept = trailing % 2 === 1 ? client.subarray(0, client.length - 1) : client;
  return kept.length === 0 ? Buffer.from(settings, "utf8") : Buffer.concat([kept, Buffer.from(` ${settings}`, "utf8")]);
}
