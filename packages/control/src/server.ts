/// <reference path="./node-ipc.d.ts" />
import { chmod, lstat, rmdir, unlink } from "node:fs/promises";
import { dirname } from "node:path";
import type { Socket } from "node:net";
import { unixSocketInUse } from "@rdsd/sock-diag";
import ipcModule from "node-ipc";
import { ControlError, DaemonAlreadyRunningError } from "./errors.js";
import { parseControlRequest, type ControlFailure, type ControlHandlers, type ControlRequest, type ControlResponse } from "./messages.js";
import { ensurePrivateDir } from "./private-dir.js";

export interface ControlServerOptions {
  socketPath: string;
  handlers: ControlHandlers;
  /** Unexpected handler failures, for the daemon's log. */
  onError?: (err: unknown, command: string) => void;
}

export interface ControlServer {
  readonly socketPath: string;
  /** Stops accepting, keeps open connections (a `stop` request still gets its answer), removes the socket (and its directory, if it made it and nothing else is in it). */
  close(): Promise<void>;
}

/**
 * Serves the control socket: directory 0700, socket 0600. One daemon per socket: a live daemon on the path
 * is refused with DaemonAlreadyRunningError; a socket nobody answers on (left by a crash) is replaced.
 */
export async function serveControl(options: ControlServerOptions): Promise<ControlServer> {
  const { socketPath } = options;
  const createdDir = await ensurePrivateDir(dirname(socketPath));
  await clearStaleSocket(socketPath);

  const ipc = new ipcModule.IPC();
  ipc.config.silent = true;
  ipc.config.unlink = false; // node-ipc would remove a live daemon's socket; the check above decides instead
  ipc.config.maxConnections = 64;

  await new Promise<void>((resolve, reject) => {
    // The directory is 0700 already; the umask makes the socket 0600 from its first instant too.
    const previousUmask = process.umask(0o177);
    ipc.serve(socketPath, () => {
      process.umask(previousUmask);
      resolve();
    });
    ipc.server.on("error", (err) => {
      process.umask(previousUmask);
      reject(err.code === "EADDRINUSE" ? new DaemonAlreadyRunningError(socketPath) : err);
    });
    ipc.server.start();
  });
  await chmod(socketPath, 0o600);
  const { ino } = await lstat(socketPath);

  ipc.server.on("request", (data: unknown, socket: Socket) => {
    void answer(options, data).then((response) => {
      if (!socket.destroyed) ipc.server.emit(socket, "response", response);
    });
  });

  let closed = false;
  return {
    socketPath,
    async close() {
      if (closed) return;
      closed = true;
      ipc.server.server.close();
      // Only our own socket: never one a newer daemon put in its place.
      const now = await lstat(socketPath).catch(() => undefined);
      if (now?.ino === ino) await unlink(socketPath).catch(() => {});
      // A directory this server made (/tmp/rdsd-<uid>) goes too once empty; one holding anything else stays.
      if (createdDir) await rmdir(dirname(socketPath)).catch(() => {});
    },
  };
}

async function answer(options: ControlServerOptions, data: unknown): Promise<ControlResponse> {
  const parsed = parseControlRequest(data);
  if ("error" in parsed) return { id: parsed.id, ok: false, error: { code: "bad-request", message: parsed.error, fix: null } };
  const request = parsed.request;
  try {
    const result = await dispatch(options.handlers, request);
    return { id: request.id, ok: true, result };
  } catch (err) {
    return { id: request.id, ok: false, error: toFailure(err, request.command, options) };
  }
}

function dispatch(handlers: ControlHandlers, request: ControlRequest) {
  switch (request.command) {
    case "status":
      return handlers.status(request.params);
    case "restart":
      return handlers.restart(request.params);
    case "reload":
      return handlers.reload(request.params);
    case "test":
      return handlers.test(request.params);
    case "stop":
      return handlers.stop(request.params);
  }
}

function toFailure(err: unknown, command: string, options: ControlServerOptions): ControlFailure {
  if (err instanceof ControlError) return { code: err.code, message: err.message, fix: err.fix };
  options.onError?.(err, command);
  return { code: "failed", message: err instanceof Error ? err.message : String(err), fix: "see `rdsd logs`" };
}

/** Leaves the path free, or throws if a daemon answers there. */
async function clearStaleSocket(socketPath: string): Promise<void> {
  const info = await lstat(socketPath).catch((err: NodeJS.ErrnoException) => {
    if (err.code === "ENOENT") return undefined;
    throw err;
  });
  if (!info) return;
  if (!info.isSocket()) throw new Error(`${socketPath} exists and is not a socket: remove it, or set RDSD_RUNTIME_DIR`);
  if (await unixSocketInUse(socketPath)) throw new DaemonAlreadyRunningError(socketPath);
  await unlink(socketPath);
}
