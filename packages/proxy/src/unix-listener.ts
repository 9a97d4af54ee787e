// A target's Unix-socket listener: its directory (private unless the target serves other users), a stale
// socket file from a crashed daemon replaced, a live one never stolen, and the directory removed on stop.

import { chmod, lstat, mkdir, rmdir, unlink } from "node:fs/promises";
import type net from "node:net";
import { unixSocketInUse } from "@rdsd/sock-diag";

/** Where the socket goes, and whose the directory is. */
export interface UnixSocketOptions {
  /** The socket file: `<directory>/.s.PGSQL.<port>`. */
  path: string;
  directory: string;
  /** rdsd's own directory (`socket: true`): made private, and removed on stop. Else the user's, left as it is. */
  managed: boolean;
}

/** Modes: the user's alone, or (allowOtherUsers) reachable by everyone, as PostgreSQL's own socket is. */
const PRIVATE = { directory: 0o700, socket: 0o600 };
const SHARED = { directory: 0o755, socket: 0o777 };

/**
 * Prepares the directory and binds `server` to the socket path. A socket file left by a process that is gone
 * (nothing answers on it) is removed first; one that answers, or a path that is not a socket, is an error that
 * says what to do.
 */
export async function listenUnix(server: net.Server, options: UnixSocketOptions, shared: boolean, target: string): Promise<void> {
  const modes = shared ? SHARED : PRIVATE;
  await prepareDirectory(options, modes.directory, target);
  await removeStaleSocket(options.path, target);
  await new Promise<void>((resolve, reject) => {
    server.once("error", (err: NodeJS.ErrnoException) => reject(new Error(`target ${target}: cannot listen on ${options.path}: ${err.message}`)));
    server.listen({ path: options.path, exclusive: true }, () => {
      server.removeAllListeners("error");
      resolve();
    });
  });
  // The directory already keeps others out (when managed); the socket's own mode is the second guard.
  await chmod(options.path, modes.socket);
}

/** After the server closed (Node unlinks the socket file): rdsd's own directory goes too. */
export async function removeSocketDirectory(options: UnixSocketOptions): Promise<void> {
  await unlink(options.path).catch(() => {});
  if (options.managed) await rmdir(options.directory).catch(() => {});
}

async function prepareDirectory(options: UnixSocketOptions, mode: number, target: string): Promise<void> {
  await mkdir(options.directory, { recursive: true, mode: 0o700 });
  const info = await lstat(options.directory);
  if (!info.isDirectory()) throw new Error(`target ${target}: ${options.directory} is not a directory: remove it or choose another socket directory`);
  if (!options.managed) return;
  const uid = process.geteuid?.();
  if (uid !== undefined && info.uid !== uid) {
    throw new Error(`target ${target}: ${options.directory} belongs to another user (uid ${info.uid}): remove it, or set socket: to a directory of your own`);
  }
  await chmod(options.directory, mode);
}

async function removeStaleSocket(path: string, target: string): Promise<void> {
  const info = await lstat(path).catch((err: NodeJS.ErrnoException) => {
    if (err.code === "ENOENT") return undefined;
    throw err;
  });
  if (info === undefined) return;
  if (!info.isSocket()) throw new Error(`target ${target}: ${path} exists and is not a socket: remove it or choose another socket directory`);
  if (await unixSocketInUse(path)) throw new Error(`target ${target}: ${path} is in use by another program (another rdsd?): stop it, or choose another socket directory or port`);
  await unlink(path);
}
