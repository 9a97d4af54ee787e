// IP literals as the kernel wants them: network-order bytes and an address family. Pure.

import { isIPv4, isIPv6 } from "node:net";

export interface IpLiteral {
  family: 4 | 6;
  /** 4 bytes for family 4, 16 for family 6, in network order. */
  bytes: Uint8Array;
}

/**
 * The bytes of an IP literal, or undefined for anything else (host names, ranges, junk).
 * An IPv4-mapped IPv6 address (::ffff:a.b.c.d, how a dual-stack listener reports an IPv4 peer) is IPv4.
 * An IPv6 zone id ("%eth0") is dropped: the address bytes do not carry it.
 */
export function ipLiteralBytes(address: string): IpLiteral | undefined {
  if (isIPv4(address)) return { family: 4, bytes: ipv4Bytes(address) };
  if (!isIPv6(address)) return undefined;
  const bytes = ipv6Bytes(address);
  return isIpv4Mapped(bytes) ? { family: 4, bytes: bytes.slice(12) } : { family: 6, bytes };
}

/** A dotted quad already validated by isIPv4 (no leading zeros, each part 0..255). */
function ipv4Bytes(address: string): Uint8Array {
  return Uint8Array.from(address.split(".").map(Number));
}

/** 16 bytes of an IPv6 literal already validated by isIPv6: "::" expanded, a trailing dotted quad allowed. */
function ipv6Bytes(address: string): Uint8Array {
  const text = address.split("%")[0]!;
  const bytes = new Uint8Array(16);
  const quad = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  // The dotted quad, when present, is the last 4 bytes; the hex groups cover what is before it.
  const hexPart = quad ? text.slice(0, quad.index) : text;
  const hexBytes = quad ? 12 : 16;
  if (quad) bytes.set(ipv4Bytes(quad[1]!), 12);
  const gap = hexPart.indexOf("::");
  const groups = (part: string) => (part === "" || part === ":" ? [] : part.replace(/^:|:$/g, "").split(":"));
  const head = groups(gap === -1 ? hexPart : hexPart.slice(0, gap));
  const tail = gap === -1 ? [] : groups(hexPart.slice(gap + 2));
  const put = (group: string, at: number) => {
    const value = parseInt(group, 16);
    bytes[at] = value >> 8;
    bytes[at + 1] = value & 0xff;
  };
  head.forEach((group, i) => put(group, i * 2));
  tail.forEach((group, i) => put(group, hexBytes - (tail.length - i) * 2));
  return bytes;
}

function isIpv4Mapped(bytes: Uint8Array): boolean {
  for (let i = 0; i < 10; i++) if (bytes[i] !== 0) return false;
  return bytes[10] === 0xff && bytes[11] === 0xff;
}
