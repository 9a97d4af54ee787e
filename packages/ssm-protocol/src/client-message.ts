import { createHash } from "node:crypto";
import { uuidFromWire, uuidToWire } from "./uuid.js";

// Byte layout of a data-channel ClientMessage (all integers big-endian).
export const HEADER_LENGTH = 116;
export const MESSAGE_TYPE_LENGTH = 32;
const OFFSET = {
  headerLength: 0,
  messageType: 4,
  schemaVersion: 36,
  createdDate: 40,
  sequenceNumber: 48,
  flags: 56,
  messageId: 64,
  payloadDigest: 80,
  payloadType: 112,
  payloadLength: 116,
} as const;
/** Where the payload starts when HeaderLength is 116. */
export const PAYLOAD_OFFSET = HEADER_LENGTH + 4;
const DIGEST_LENGTH = 32;

/** The MessageType strings the data channel uses. */
export const MessageType = {
  InputStreamData: "input_stream_data",
  OutputStreamData: "output_stream_data",
  Acknowledge: "acknowledge",
  ChannelClosed: "channel_closed",
  StartPublication: "start_publication",
  PausePublication: "pause_publication",
} as const;
export type KnownMessageType = (typeof MessageType)[keyof typeof MessageType];

/** PayloadType values. */
export const PayloadType = {
  None: 0,
  Output: 1,
  Error: 2,
  Size: 3,
  Parameter: 4,
  HandshakeRequest: 5,
  HandshakeResponse: 6,
  HandshakeComplete: 7,
  EncChallengeRequest: 8,
  EncChallengeResponse: 9,
  Flag: 10,
  StdErr: 11,
  ExitCode: 12,
} as const;

/** Flags values used by the two sides: bit0 SYN, bit1 FIN. */
export const MessageFlags = {
  Data: 0,
  Syn: 1,
  Fin: 2,
  Acknowledge: 3,
} as const;

/** A message to encode. */
export interface ClientMessageFields {
  messageType: string;
  /** Defaults to 1. */
  schemaVersion?: number;
  /** Epoch milliseconds; must not be 0. */
  createdDate: number;
  sequenceNumber: number;
  flags: number;
  /** Canonical hyphenated UUID. */
  messageId: string;
  payloadType: number;
  payload: Uint8Array;
}

/** A decoded message. `payload` is a view into the input bytes (no copy). */
export interface ClientMessage {
  headerLength: number;
  messageType: string;
  schemaVersion: number;
  createdDate: number;
  sequenceNumber: number;
  flags: number;
  messageId: string;
  payloadDigest: Buffer;
  payloadType: number;
  payloadLength: number;
  payload: Buffer;
}

/** Bytes that are not a valid ClientMessage. */
export class ClientMessageError extends Error {
  override name = "ClientMessageError";
}

export function sha256(data: Uint8Array): Buffer {
  return createHash("sha256").update(data).digest();
}

/** Encodes one message: header length 116, space-padded type, swapped UUID halves, SHA-256 digest. */
export function encodeClientMessage(fields: ClientMessageFields): Buffer {
  const typeBytes = Buffer.from(fields.messageType, "ascii");
  if (typeBytes.length === 0 || typeBytes.length > MESSAGE_TYPE_LENGTH) {
    throw new ClientMessageError(`MessageType must be 1..${MESSAGE_TYPE_LENGTH} ASCII bytes`);
  }
  if (!Number.isSafeInteger(fields.createdDate) || fields.createdDate <= 0) {
    throw new ClientMessageError("CreatedDate must be a positive epoch-millisecond integer");
  }
  if (!Number.isSafeInteger(fields.sequenceNumber)) throw new ClientMessageError("SequenceNumber must be a safe integer");
  if (!Number.isSafeInteger(fields.flags) || fields.flags < 0) throw new ClientMessageError("Flags must be a non-negative integer");
  const payload = fields.payload;
  const out = Buffer.allocUnsafe(PAYLOAD_OFFSET + payload.length);
  out.writeUInt32BE(HEADER_LENGTH, OFFSET.headerLength);
  out.fill(0x20, OFFSET.messageType, OFFSET.messageType + MESSAGE_TYPE_LENGTH);
  typeBytes.copy(out, OFFSET.messageType);
  out.writeUInt32BE(fields.schemaVersion ?? 1, OFFSET.schemaVersion);
  out.writeBigUInt64BE(BigInt(fields.createdDate), OFFSET.createdDate);
  out.writeBigInt64BE(BigInt(fields.sequenceNumber), OFFSET.sequenceNumber);
  out.writeBigUInt64BE(BigInt(fields.flags), OFFSET.flags);
  uuidToWire(fields.messageId).copy(out, OFFSET.messageId);
  sha256(payload).copy(out, OFFSET.payloadDigest);
  out.writeUInt32BE(fields.payloadType >>> 0, OFFSET.payloadType);
  out.writeUInt32BE(payload.length, OFFSET.payloadLength);
  out.set(payload, PAYLOAD_OFFSET);
  return out;
}

export interface DecodeOptions {
  /** Check PayloadDigest against the payload (default true), as the official client does. */
  verifyDigest?: boolean;
}

/** Decodes and validates one message; throws ClientMessageError on malformed bytes. */
export function decodeClientMessage(bytes: Uint8Array, options: DecodeOptions = {}): ClientMessage {
  const buf = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);
  if (buf.length < PAYLOAD_OFFSET) throw new ClientMessageError(`message too short: ${buf.length} bytes`);
  const headerLength = buf.readUInt32BE(OFFSET.headerLength);
  if (headerLength < HEADER_LENGTH || headerLength + 4 > buf.length) {
    throw new ClientMessageError(`bad HeaderLength ${headerLength}`);
  }
  const messageType = trimType(buf.subarray(OFFSET.messageType, OFFSET.messageType + MESSAGE_TYPE_LENGTH));
  if (messageType === "") throw new ClientMessageError("MessageType is missing");
  const createdDate = toSafeNumber(buf.readBigUInt64BE(OFFSET.createdDate), "CreatedDate");
  const isPublication = messageType === MessageType.StartPublication || messageType === MessageType.PausePublication;
  if (createdDate === 0 && !isPublication) throw new ClientMessageError("CreatedDate is missing");
  const payloadLength = buf.readUInt32BE(OFFSET.payloadLength);
  const payloadStart = headerLength + 4;
  if (payloadStart + payloadLength !== buf.length) {
    throw new ClientMessageError(`PayloadLength ${payloadLength} does not match the ${buf.length - payloadStart} bytes present`);
  }
  const payload = buf.subarray(payloadStart);
  const payloadDigest = buf.subarray(OFFSET.payloadDigest, OFFSET.payloadDigest + DIGEST_LENGTH);
  // The official client skips the check for an empty payload; so do we.
  if (options.verifyDigest !== false && payloadLength > 0 && !isPublication && !sha256(payload).equals(payloadDigest)) {
    throw new ClientMessageError("PayloadDigest does not match the payload");
  }
  return {
    headerLength,
    messageType,
    schemaVersion: buf.readUInt32BE(OFFSET.schemaVersion),
    createdDate,
    sequenceNumber: toSafeNumber(buf.readBigInt64BE(OFFSET.sequenceNumber), "SequenceNumber"),
    flags: toSafeNumber(buf.readBigUInt64BE(OFFSET.flags), "Flags"),
    messageId: uuidFromWire(buf, OFFSET.messageId),
    payloadDigest,
    payloadType: buf.readUInt32BE(OFFSET.payloadType),
    payloadLength,
    payload,
  };
}

function trimType(raw: Buffer): string {
  let start = 0;
  let end = raw.length;
  const isPad = (b: number | undefined) => b === 0x20 || b === 0x00;
  while (start < end && isPad(raw[start])) start++;
  while (end > start && isPad(raw[end - 1])) end--;
  return raw.toString("latin1", start, end);
}

function toSafeNumber(value: bigint, field: string): number {
  if (value > BigInt(Number.MAX_SAFE_INTEGER) || value < BigInt(Number.MIN_SAFE_INTEGER)) {
    throw new ClientMessageError(`${field} out of range`);
  }
  return Number(value);
}
