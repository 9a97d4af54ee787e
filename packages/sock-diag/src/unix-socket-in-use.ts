// Whether a Unix socket path belongs to a live listener: decides if rdsd may remove the file and bind there.

import net from "node:net";

/** How long a connect may neither succeed nor fail before the socket counts as alive anyway. */
export const IN_USE_PROBE_TIMEOUT_MS = 1_000;

/**
 * Connects to the socket. Only ECONNREFUSED (a file nobody listens on: left by a crash) and ENOENT (gone) mean
 * "not in use". Every other outcome counts as in use, so rdsd never unlinks another program's live socket: a
 * listener whose accept backlog is full fails a non-blocking connect with EAGAIN, and one too busy to answer
 * within the timeout may simply be slow.
 */
export function unixSocketInUse(path: string, timeoutMs = IN_USE_PROBE_TIMEOUT_MS): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = net.connect(path);
    const done = (inUse: boolean) => {
      clearTimeout(timer);
      probe.destroy();
      resolve(inUse);
    };
    const timer = setTimeout(() => done(true), timeoutMs);
    probe.once("connect", () => done(true));
    probe.once("error", (err: NodeJS.ErrnoException) => done(err.code !== "ECONNREFUSED" && err.code !== "ENOENT"));
  });
}
