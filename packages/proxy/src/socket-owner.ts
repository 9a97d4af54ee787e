// Which local user owns the other end of a loopback TCP connection (Linux). First choice: the kernel's exact
// lookup of the client's socket through netlink sock_diag (@rdsd/sock-diag, a native addon), microseconds.
// Fallback when the addon is not built or fails: the row of /proc/net/tcp or /proc/net/tcp6 whose local
// address is the client's address:port and whose remote address is the listener's; the kernel builds that
// table by walking its whole established-socket hash, milliseconds per read. Parsing is pure; reading the
// tables is one small function beside it.

import { open } from "node:fs/promises";
import { endianness } from "node:os";
import { ipLiteralBytes, sockDiagAvailable, tcpSocketOwner, type Endpoint } from "@rdsd/sock-diag";

export type { Endpoint };

/** TIME_WAIT rows carry uid 0 and no inode: they say nothing about an owner. */
const TCP_TIME_WAIT = "06";

/**
 * The address:port as the kernel prints it in /proc/net/tcp{,6}: the address's 32-bit words in host byte
 * order, the port in big-endian hex. `littleEndian` is the host's byte order (os.endianness() === "LE").
 * An IPv4-mapped IPv6 address is IPv4 (table tcp). Undefined for anything that is not an IP literal.
 */
export function procNetAddress(endpoint: Endpoint, littleEndian: boolean): { table: "tcp" | "tcp6"; text: string } | undefined {
  const literal = ipLiteralBytes(endpoint.address);
  if (!literal) return undefined;
  const port = endpoint.port.toString(16).toUpperCase().padStart(4, "0");
  let hex = "";
  for (let word = 0; word < literal.bytes.length; word += 4) {
    const group = [...literal.bytes.subarray(word, word + 4)];
    if (littleEndian) group.reverse();
    hex += group.map((b) => b.toString(16).toUpperCase().padStart(2, "0")).join("");
  }
  return { table: literal.family === 4 ? "tcp" : "tcp6", text: `${hex}:${port}` };
}

/**
 * The uid owning the socket whose local end is `local` and remote end `remote`, read from the text of
 * /proc/net/tcp or /proc/net/tcp6. Undefined when no live row matches (the client already left).
 * Searches the text for the address pair instead of splitting every line: the table holds a row per
 * socket on the machine, and this runs once per accepted connection.
 */
export function findSocketOwner(tableText: string, local: string, remote: string): number | undefined {
  const needle = ` ${local} ${remote} `;
  let at = tableText.indexOf(needle);
  while (at !== -1) {
    const lineEnd = tableText.indexOf("\n", at);
    const rest = tableText.slice(at + needle.length, lineEnd === -1 ? undefined : lineEnd).trim().split(/\s+/);
    // After the addresses: st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode
    const state = rest[0];
    const uid = Number(rest[4]);
    if (state !== TCP_TIME_WAIT && Number.isInteger(uid)) return uid;
    at = tableText.indexOf(needle, at + needle.length);
  }
  return undefined;
}

/** Reads a /proc table; tests pass their own. */
export type ProcTableReader = (table: "tcp" | "tcp6") => Promise<string>;

/** Read size for scanning a table: the kernel formats rows only as they are read (~150 bytes each). */
const SCAN_CHUNK_BYTES = 64 * 1024;

/**
 * Scans /proc/net/<table> chunk by chunk and stops at the first live row for the pair. The table has a row per
 * socket on the machine, TIME_WAIT ones included (thousands after bursts of short connections), and the kernel
 * builds it as it is read: stopping at the row halves the cost on average compared with reading it whole.
 */
async function scanProcTable(table: "tcp" | "tcp6", local: string, remote: string): Promise<number | undefined> {
  const file = await open(`/proc/net/${table}`, "r");
  try {
    const chunk = Buffer.allocUnsafe(SCAN_CHUNK_BYTES);
    let partialLine = "";
    for (;;) {
      const { bytesRead } = await file.read(chunk, 0, chunk.length, null);
      if (bytesRead === 0) return undefined;
      const text = partialLine + chunk.toString("latin1", 0, bytesRead);
      const end = text.lastIndexOf("\n") + 1;
      partialLine = text.slice(end);
      const uid = findSocketOwner(text.slice(0, end), local, remote);
      if (uid !== undefined) return uid;
    }
  } finally {
    await file.close();
  }
}

/**
 * The /proc scan alone: the uid of the local process that opened the connection `client` -> `listener`.
 * Undefined when the tables have no live row for it (the client left) or on a system without them.
 */
export async function procSocketOwnerUid(client: Endpoint, listener: Endpoint, read?: ProcTableReader): Promise<number | undefined> {
  const littleEndian = endianness() === "LE";
  const local = procNetAddress(client, littleEndian);
  const remote = procNetAddress(listener, littleEndian);
  if (!local || !remote || local.table !== remote.table) return undefined;
  if (!read) return scanProcTable(local.table, local.text, remote.text);
  return findSocketOwner(await read(local.table), local.text, remote.text);
}

/** The kernel's exact lookup, or why this process cannot use it. */
export type ExactOwnerLookup = { ok: true; owner: (local: Endpoint, remote: Endpoint) => number | undefined } | { ok: false; reason: string };

/** sock_diag when its addon is built and the kernel answers through it (checked once per process). */
export function sockDiagOwnerLookup(): ExactOwnerLookup {
  const status = sockDiagAvailable();
  return status.ok ? { ok: true, owner: tcpSocketOwner } : status;
}

export type OwnerLookupMethod = "sock_diag" | "proc";

export interface SocketOwner {
  /** Undefined: no live socket of any local process is the client's end (it left, or it is not local). */
  uid: number | undefined;
  /** Which lookup gave the answer. */
  method: OwnerLookupMethod;
  /** Why /proc was used instead of sock_diag, only the first time this process falls back for that reason (log it). */
  fallbackNotice?: string;
}

export interface SocketOwnerOptions {
  /** Default: sockDiagOwnerLookup(). */
  exact?: ExactOwnerLookup;
  /** Reads a /proc table for the fallback; tests pass their own. */
  read?: ProcTableReader;
}

/** Fallback reasons already reported by this process: the same reason is logged once, not per connection. */
const reportedFallbacks = new Set<string>();

function firstTime(notice: string): string | undefined {
  if (reportedFallbacks.has(notice)) return undefined;
  reportedFallbacks.add(notice);
  return notice;
}

/**
 * The uid of the local process that opened the connection `client` -> `listener` (Linux only): sock_diag's
 * exact lookup, or the /proc scan when sock_diag is unavailable or fails for this connection.
 */
export async function socketOwner(client: Endpoint, listener: Endpoint, options: SocketOwnerOptions = {}): Promise<SocketOwner> {
  const exact = options.exact ?? sockDiagOwnerLookup();
  let fallbackNotice: string | undefined;
  if (exact.ok) {
    const local = ipLiteralBytes(client.address);
    const remote = ipLiteralBytes(listener.address);
    // Not a pair of IP literals of one family (a socket already closed reports no address): nobody's.
    if (!local || !remote || local.family !== remote.family) return { uid: undefined, method: "sock_diag" };
    try {
      return { uid: exact.owner(client, listener), method: "sock_diag" };
    } catch (err) {
      fallbackNotice = firstTime(`local-user check: the sock_diag lookup failed (${(err as Error).message}); using the /proc/net/tcp scan for such connections`);
    }
  } else {
    fallbackNotice = firstTime(`local-user check uses the slower /proc/net/tcp scan (several ms of CPU per connection): ${exact.reason}`);
  }
  const uid = await procSocketOwnerUid(client, listener, options.read);
  return fallbackNotice === undefined ? { uid, method: "proc" } : { uid, method: "proc", fallbackNotice };
}

/** The Unix-socket side of the same question: the peer's credentials, straight from the kernel (SO_PEERCRED). */
export { peerCredentialsAvailable, unixPeerCredentials } from "@rdsd/sock-diag";
