import { randomUUID } from "node:crypto";

const UUID_PATTERN = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** True when `text` is a canonical hyphenated UUID (any version). */
export function isUuid(text: string): boolean {
  return UUID_PATTERN.test(text);
}

/** A random version-4 UUID, lowercase and hyphenated. */
export function randomUuid(): string {
  return randomUUID();
}

/**
 * The 16 wire bytes of a UUID in a ClientMessage: the service writes the least significant
 * 8 bytes first, then the most significant 8 (the two halves swapped).
 */
export function uuidToWire(uuid: string): Buffer {
  if (!isUuid(uuid)) throw new TypeError(`not a UUID: ${JSON.stringify(uuid)}`);
  const canonical = Buffer.from(uuid.replace(/-/g, ""), "hex");
  const wire = Buffer.allocUnsafe(16);
  canonical.copy(wire, 0, 8, 16);
  canonical.copy(wire, 8, 0, 8);
  return wire;
}

/** The UUID whose wire form (halves swapped) is `wire[offset .. offset+16)`. */
export function uuidFromWire(wire: Uint8Array, offset = 0): string {
  if (wire.length < offset + 16) throw new RangeError("UUID needs 16 bytes");
  const hex =
    Buffer.from(wire.buffer, wire.byteOffset + offset + 8, 8).toString("hex") +
    Buffer.from(wire.buffer, wire.byteOffset + offset, 8).toString("hex");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}
