import { createHash, randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import {
  ClientMessageError,
  decodeClientMessage,
  encodeClientMessage,
  MessageType,
  PayloadType,
} from "./client-message.js";
import { uuidFromWire, uuidToWire } from "./uuid.js";

/** Builds a message field by field from the documented table, without the codec. */
function handBuilt(): Buffer {
  const payload = Buffer.from("hello, agent", "utf8");
  const b = Buffer.alloc(120 + payload.length);
  b.writeUInt32BE(116, 0); // HeaderLength
  Buffer.from("input_stream_data".padEnd(32, " "), "ascii").copy(b, 4); // MessageType, space padded
  b.writeUInt32BE(1, 36); // SchemaVersion
  b.writeBigUInt64BE(1_700_000_000_123n, 40); // CreatedDate
  b.writeBigInt64BE(7n, 48); // SequenceNumber
  b.writeBigUInt64BE(0n, 56); // Flags
  // MessageId 00112233-4455-6677-8899-aabbccddeeff: least significant half first.
  Buffer.from("8899aabbccddeeff" + "0011223344556677", "hex").copy(b, 64);
  createHash("sha256").update(payload).digest().copy(b, 80); // PayloadDigest
  b.writeUInt32BE(1, 112); // PayloadType Output
  b.writeUInt32BE(payload.length, 116); // PayloadLength
  payload.copy(b, 120);
  return b;
}

describe("ClientMessage codec", () => {
  it("decodes a hand-built message and re-encodes it to identical bytes (golden)", () => {
    const bytes = handBuilt();
    const msg = decodeClientMessage(bytes);
    expect(msg).toMatchObject({
      headerLength: 116,
      messageType: "input_stream_data",
      schemaVersion: 1,
      createdDate: 1_700_000_000_123,
      sequenceNumber: 7,
      flags: 0,
      messageId: "00112233-4455-6677-8899-aabbccddeeff",
      payloadType: PayloadType.Output,
      payloadLength: 12,
    });
    expect(msg.payload.toString()).toBe("hello, agent");
    const again = encodeClientMessage(msg);
    expect(again.equals(bytes)).toBe(true);
  });

  it("pads the type with spaces and trims spaces and NULs when reading", () => {
    const bytes = encodeClientMessage({
      messageType: MessageType.Acknowledge,
      createdDate: 1,
      sequenceNumber: 0,
      flags: 3,
      messageId: "00000000-0000-4000-8000-000000000001",
      payloadType: 0,
      payload: Buffer.from("{}"),
    });
    expect(bytes.subarray(4, 36).toString("ascii")).toBe("acknowledge" + " ".repeat(21));
    bytes.fill(0, 4 + 11, 36); // NUL padding, as some writers do
    expect(decodeClientMessage(bytes).messageType).toBe("acknowledge");
  });

  it("swaps the UUID halves on the wire", () => {
    const wire = uuidToWire("00112233-4455-6677-8899-aabbccddeeff");
    expect(wire.toString("hex")).toBe("8899aabbccddeeff0011223344556677");
    expect(uuidFromWire(wire)).toBe("00112233-4455-6677-8899-aabbccddeeff");
  });

  it("rejects a payload whose digest does not match, unless asked not to check", () => {
    const bytes = handBuilt();
    bytes[120] = bytes[120]! ^ 0xff;
    expect(() => decodeClientMessage(bytes)).toThrow(/PayloadDigest/);
    expect(decodeClientMessage(bytes, { verifyDigest: false }).sequenceNumber).toBe(7);
  });

  it("rejects short, inconsistent and zero-dated messages with a clear error", () => {
    expect(() => decodeClientMessage(Buffer.alloc(50))).toThrow(/too short/);
    const badHeader = handBuilt();
    badHeader.writeUInt32BE(5000, 0);
    expect(() => decodeClientMessage(badHeader)).toThrow(/HeaderLength/);
    const badLength = handBuilt();
    badLength.writeUInt32BE(99, 116);
    expect(() => decodeClientMessage(badLength)).toThrow(/PayloadLength/);
    const noDate = handBuilt();
    noDate.writeBigUInt64BE(0n, 40);
    expect(() => decodeClientMessage(noDate)).toThrow(/CreatedDate/);
    const noType = handBuilt();
    noType.fill(0x20, 4, 36);
    expect(() => decodeClientMessage(noType)).toThrow(/MessageType/);
  });

  it("never throws anything but ClientMessageError on hostile bytes", () => {
    for (let i = 0; i < 2000; i++) {
      const junk = randomBytes(Math.floor(Math.random() * 300));
      if (junk.length >= 4 && i % 2 === 0) junk.writeUInt32BE(116, 0);
      try {
        decodeClientMessage(junk);
      } catch (err) {
        expect(err).toBeInstanceOf(ClientMessageError);
      }
    }
  });

  it("refuses to encode what the peer would reject", () => {
    const base = {
      messageType: "input_stream_data",
      createdDate: 1,
      sequenceNumber: 0,
      flags: 0,
      messageId: "00112233-4455-6677-8899-aabbccddeeff",
      payloadType: 1,
      payload: Buffer.alloc(0),
    };
    expect(() => encodeClientMessage({ ...base, createdDate: 0 })).toThrow(/CreatedDate/);
    expect(() => encodeClientMessage({ ...base, messageType: "x".repeat(33) })).toThrow(/MessageType/);
    expect(() => encodeClientMessage({ ...base, messageId: "nope" })).toThrow(/UUID/);
  });
});
