// Loads the native addon once, on first use, and checks that the kernel really answers through it.

import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";

/** What the kernel said about one socket. */
export interface TcpSocketInfo {
  /** The owner's uid (as this process's user namespace sees it). */
  uid: number;
  /** The kernel's TCP state number: 1 ESTABLISHED, 8 CLOSE_WAIT, 10 LISTEN, ... (never 6 TIME_WAIT). */
  state: number;
  /** The socket's inode (socket:[inode] in /proc/<pid>/fd); 0 once no process holds it. */
  inode: number;
}

/** The functions of build/Release/sock_diag.node (native/sock_diag.c). */
export interface SockDiagAddon {
  lookup(family: 4 | 6, local: Uint8Array, localPort: number, remote: Uint8Array, remotePort: number): TcpSocketInfo | null;
  selfTest(): { inode: number; found: TcpSocketInfo | null };
  peerCredentials(fd: number): PeerCredentials;
}

/** Who connected to a Unix socket, as the kernel recorded it at connect time. */
export interface PeerCredentials {
  uid: number;
  gid: number;
  /** The connecting process; -1 where the OS does not say (getpeereid). */
  pid: number;
}

export type SockDiagStatus = { ok: true } | { ok: false; reason: string };

/** src/ and dist/ are both one level below the package, beside build/. */
export const ADDON_PATH = fileURLToPath(new URL("../build/Release/sock_diag.node", import.meta.url));

const TCP_LISTEN = 10;

let loaded: { ok: true; addon: SockDiagAddon } | { ok: false; reason: string } | undefined;

/** The addon, loaded and self-tested on the first call; the same answer after that. */
export function loadSockDiag(): { ok: true; addon: SockDiagAddon } | { ok: false; reason: string } {
  loaded ??= load();
  return loaded;
}

function load(): { ok: true; addon: SockDiagAddon } | { ok: false; reason: string } {
  if (process.platform !== "linux") return { ok: false, reason: `netlink sock_diag is Linux only (this is ${process.platform})` };
  const required = requireAddon<SockDiagAddon>(ADDON_PATH);
  return required.ok ? selfTest(required.addon) : required;
}

/** A built .node file of this package, or why there is none. */
export function requireAddon<T>(path: string): { ok: true; addon: T } | { ok: false; reason: string } {
  try {
    return { ok: true, addon: createRequire(import.meta.url)(path) as T };
  } catch (err) {
    const error = err as NodeJS.ErrnoException;
    if (error.code === "MODULE_NOT_FOUND") {
      return { ok: false, reason: `the native addon is not built (${path} is missing; it builds on install when a C compiler, make and python3 are present)` };
    }
    return { ok: false, reason: `cannot load ${path}: ${error.message}` };
  }
}

/**
 * Looks up a listener the addon opens for the purpose. A kernel without inet_diag/tcp_diag answers
 * "no such socket" to every request, which would pass for "the client left" on every connection.
 */
export function selfTest(addon: SockDiagAddon): { ok: true; addon: SockDiagAddon } | { ok: false; reason: string } {
  try {
    const { inode, found } = addon.selfTest();
    if (found === null) return { ok: false, reason: "the kernel's sock_diag does not find sockets (no inet_diag/tcp_diag support?)" };
    if (found.inode !== inode || found.state !== TCP_LISTEN) {
      return { ok: false, reason: `the kernel's sock_diag answered for another socket (inode ${found.inode}, state ${found.state}; expected ${inode}, ${TCP_LISTEN})` };
    }
    return { ok: true, addon };
  } catch (err) {
    return { ok: false, reason: `sock_diag self-test failed: ${(err as Error).message}` };
  }
}
