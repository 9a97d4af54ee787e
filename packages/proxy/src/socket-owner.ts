// Which local user owns the other end of a loopback TCP connection (Linux): the client's socket is the
// row of /proc/net/tcp or /proc/net/tcp6 whose local address is the client's address:port and whose
// remote address is the listener's. Parsing is pure; reading the tables is one small function beside it.

import { open } from "node:fs/promises";
import { isIPv4, isIPv6 } from "node:net";
import { endianness } from "node:os";

/** One end of a TCP connection as Node reports it (an IP literal and a port). */
export interface Endpoint {
  address: string;
  port: number;
}

/** TIME_WAIT rows carry uid 0 and no inode: they say nothing about an owner. */
const TCP_TIME_WAIT = "06";

/**
 * The address:port as the kernel prints it in /proc/net/tcp{,6}: the address's 32-bit words in host byte
 * order, the port in big-endian hex. `littleEndian` is the host's byte order (os.endianness() === "LE").
 * Undefined for anything that is not an IP literal.
 */
export function procNetAddress(endpoint: Endpoint, littleEndian: boolean): { table: "tcp" | "tcp6"; text: string } | undefined {
  const port = endpoint.port.toString(16).toUpperCase().padStart(4, "0");
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(endpoint.address);
  const v4 = mapped ? mapped[1]! : endpoint.address;
  let bytes: number[];
  let table: "tcp" | "tcp6";
  if (isIPv4(v4)) {
    bytes = v4.split(".").map(Number);
    table = "tcp";
  } else if (isIPv6(endpoint.address)) {
    bytes = ipv6Bytes(endpoint.address);
    table = "tcp6";
  } else {
    return undefined;
  }
  let hex = "";
  for (let word = 0; word < bytes.length; word += 4) {
    const group = bytes.slice(word, word + 4);
    if (littleEndian) group.reverse();
    hex += group.map((b) => b.toString(16).toUpperCase().padStart(2, "0")).join("");
  }
  return { table, text: `${hex}:${port}` };
}

/** 16 bytes of an IPv6 literal (no zone id; "::" expanded; a trailing dotted quad allowed). */
function ipv6Bytes(address: string): number[] {
  let text = address.split("%")[0]!;
  const quad = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (quad) {
    const [a, b, c, d] = quad[1]!.split(".").map(Number) as [number, number, number, number];
    text = `${text.slice(0, quad.index)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head, tail] = text.includes("::") ? text.split("::") : [text, undefined];
  const headGroups = head ? head.split(":") : [];
  const tailGroups = tail ? tail.split(":") : [];
  const missing = 8 - headGroups.length - tailGroups.length;
  const groups = [...headGroups, ...Array<string>(tail === undefined ? 0 : missing).fill("0"), ...tailGroups];
  return groups.flatMap((g) => {
    const n = parseInt(g, 16);
    return [n >> 8, n & 0xff];
  });
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
 * The uid of the local process that opened the connection `client` -> `listener` (Linux only).
 * Undefined when the tables have no live row for it (the client left) or on a system without them.
 */
export async function socketOwnerUid(client: Endpoint, listener: Endpoint, read?: ProcTableReader): Promise<number | undefined> {
  const littleEndian = endianness() === "LE";
  const local = procNetAddress(client, littleEndian);
  const remote = procNetAddress(listener, littleEndian);
  if (!local || !remote || local.table !== remote.table) return undefined;
  if (!read) return scanProcTable(local.table, local.text, remote.text);
  return findSocketOwner(await read(local.table), local.text, remote.text);
}
