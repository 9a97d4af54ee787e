// Who is on the other end of an accepted Unix-socket connection: SO_PEERCRED (Linux) through the addon.

import type { Socket } from "node:net";
import { ADDON_PATH, requireAddon, type PeerCredentials, type SockDiagAddon } from "./addon.js";

let loaded: { ok: true; addon: SockDiagAddon } | { ok: false; reason: string } | undefined;

/** Whether peer credentials can be read here (the addon is built; Linux only for now). */
export function peerCredentialsAvailable(): { ok: true } | { ok: false; reason: string } {
  loaded ??= load();
  return loaded.ok ? { ok: true } : loaded;
}

function load(): { ok: true; addon: SockDiagAddon } | { ok: false; reason: string } {
  if (process.platform !== "linux") return { ok: false, reason: `the native addon is built on Linux only (this is ${process.platform})` };
  const required = requireAddon<SockDiagAddon>(ADDON_PATH);
  if (required.ok && typeof required.addon.peerCredentials !== "function") return { ok: false, reason: `${ADDON_PATH} predates peerCredentials: rebuild it (npm run build:addon -w @rdsd/sock-diag)` };
  return required;
}

/**
 * The credentials of the process that connected `socket`, an accepted Unix-socket connection. Throws when the
 * addon cannot be used (see peerCredentialsAvailable), when the socket has no descriptor (closed, or not a
 * socket libuv owns), and with `code`/`errno` when the kernel refuses.
 */
export function unixPeerCredentials(socket: Socket): PeerCredentials {
  const state = (loaded ??= load());
  if (!state.ok) throw new Error(`peer credentials unavailable: ${state.reason}`);
  // libuv's handle keeps the descriptor; Node exposes it as _handle.fd on POSIX (there is no public accessor).
  const fd = (socket as unknown as { _handle?: { fd?: unknown } })._handle?.fd;
  if (typeof fd !== "number" || fd < 0) throw new Error("the connection has no file descriptor (already closed?)");
  return state.addon.peerCredentials(fd);
}
