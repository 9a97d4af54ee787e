import { BlockList, isIP, isIPv6 } from "node:net";
import type { ListenAddress } from "./types.js";

/** Which local addresses listeners may bind. One switch so an explicit opt-in can be added later. */
export interface ListenPolicy {
  /** False: only loopback addresses (127.0.0.0/8, ::1) are accepted. */
  allowNonLoopback: boolean;
}

/** The default policy: listeners bind to loopback only (a target's allowNonLoopback: true lifts it). */
export const LOOPBACK_ONLY: ListenPolicy = { allowNonLoopback: false };

const loopback = new BlockList();
loopback.addSubnet("127.0.0.0", 8, "ipv4");
loopback.addAddress("::1", "ipv6");

/** True for 127.0.0.0/8 and ::1 in any of its spellings. */
export function isLoopback(ip: string): boolean {
  const family = isIP(ip);
  if (family === 0) return false;
  return loopback.check(ip, family === 4 ? "ipv4" : "ipv6");
}

function isPort(n: number): boolean {
  return Number.isInteger(n) && n >= 1 && n <= 65535;
}

function parsePortText(text: string): number | undefined {
  if (!/^\d{1,5}$/.test(text)) return undefined;
  const n = Number(text);
  return isPort(n) ? n : undefined;
}

/** Splits "HOST:PORT" or "[V6]:PORT"; undefined when the shape is wrong or the port out of range. */
export function splitHostPort(text: string): { host: string; port: number } | undefined {
  const bracketed = /^\[([^\]]+)\]:(\d+)$/.exec(text);
  if (bracketed !== null) {
    const port = parsePortText(bracketed[2] ?? "");
    const host = bracketed[1] ?? "";
    return port !== undefined && isIPv6(host) ? { host, port } : undefined;
  }
  const colon = text.lastIndexOf(":");
  if (colon <= 0) return undefined;
  const host = text.slice(0, colon);
  if (host.includes(":")) return undefined; // a bare IPv6 literal needs brackets
  const port = parsePortText(text.slice(colon + 1));
  return port === undefined ? undefined : { host, port };
}

/** "HOST:PORT", or "[V6]:PORT" for an IPv6 literal: the inverse of splitHostPort, as logs and status show addresses. */
export function joinHostPort(host: string, port: number): string {
  return isIPv6(host) ? `[${host}]:${port}` : `${host}:${port}`;
}

const HOSTNAME_LABEL = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/i;

/** A DNS name (letters, digits, hyphens; dot-separated labels of up to 63) or an IP literal. */
export function isHostname(text: string): boolean {
  if (isIP(text) !== 0) return true;
  const name = text.endsWith(".") ? text.slice(0, -1) : text;
  if (name.length === 0 || name.length > 253) return false;
  return name.split(".").every((label) => HOSTNAME_LABEL.test(label));
}

/** IPv6 loopback in its short form, everything else as written. */
function canonicalIp(ip: string): string {
  return isIPv6(ip) && isLoopback(ip) ? "::1" : ip;
}

/** The outcome of reading a `listen` value. */
export type ListenResult = { addresses: ListenAddress[] } | { error: string };

const EXPECTED_LISTEN = `expected a port 1-65535 or "ADDRESS:PORT" on loopback`;

/**
 * Reads a listen value: a port (number or digits) means 127.0.0.1 and ::1 on that port;
 * "ADDR:PORT" / "[V6]:PORT" means just that address, which must be an IP literal and,
 * under `policy`, loopback.
 */
export function parseListen(value: string | number, policy: ListenPolicy): ListenResult {
  const shown = typeof value === "number" ? String(value) : JSON.stringify(value);
  const port = typeof value === "number" ? (isPort(value) ? value : undefined) : parsePortText(value);
  if (port !== undefined) {
    return { addresses: [{ host: "127.0.0.1", port }, { host: "::1", port }] };
  }
  if (typeof value === "number") return { error: `${EXPECTED_LISTEN}, got ${shown}` };
  const hostPort = splitHostPort(value);
  if (hostPort === undefined) return { error: `${EXPECTED_LISTEN}, got ${shown}` };
  if (isIP(hostPort.host) === 0) {
    return { error: `${EXPECTED_LISTEN}: the address must be an IP literal such as 127.0.0.1 or [::1], got ${shown}` };
  }
  if (!policy.allowNonLoopback && !isLoopback(hostPort.host)) {
    return { error: `${hostPort.host} is not a loopback address: listeners bind to loopback only (use 127.0.0.1, [::1] or a bare port; allowNonLoopback: true on the target exposes it to the network), got ${shown}` };
  }
  return { addresses: [{ host: canonicalIp(hostPort.host), port: hostPort.port }] };
}
