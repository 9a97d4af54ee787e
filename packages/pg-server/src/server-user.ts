import { execFile } from "node:child_process";
import { chmod, chown, writeFile } from "node:fs/promises";

/** The OS user a server runs as when this process is root. */
export interface ServerUser {
  uid: number;
  gid: number;
}

/**
 * PostgreSQL refuses to run as root: as root, the `postgres` OS user to run it as (from `getent passwd`);
 * otherwise undefined, and the server runs as this process's user.
 */
export async function postgresOsUser(): Promise<ServerUser | undefined> {
  if (process.getuid?.() !== 0) return undefined;
  const entry = await new Promise<string | undefined>((resolve) => {
    execFile("getent", ["passwd", "postgres"], { encoding: "utf8" }, (error, stdout) => resolve(error ? undefined : stdout));
  });
  const user = entry === undefined ? undefined : userFromPasswdLine(entry);
  if (!user) {
    throw new Error("PostgreSQL refuses to run as root, and there is no `postgres` OS user to run it as: create one (Debian's postgresql package does) or run as a normal user");
  }
  return user;
}

/** uid and gid of a passwd line (name:password:uid:gid:...), or undefined when it is not one. */
function userFromPasswdLine(line: string): ServerUser | undefined {
  const [, , uid, gid] = line.trim().split(":");
  if (!uid || !gid || !/^\d+$/.test(uid) || !/^\d+$/.test(gid)) return undefined;
  return { uid: Number(uid), gid: Number(gid) };
}

/** Hands a path to the server user (no-op without one): the server must own its data and socket directories. */
export async function giveToServer(path: string, user: ServerUser | undefined): Promise<void> {
  if (user) await chown(path, user.uid, user.gid);
}

/**
 * Writes a file the server reads (pg_hba.conf, server.key...) with exactly `mode` (umask aside) and owned by
 * the server user: PostgreSQL refuses a key file that others can read.
 */
export async function writeServerFile(path: string, content: string, mode: number, user: ServerUser | undefined): Promise<void> {
  await writeFile(path, content, { mode });
  await chmod(path, mode);
  await giveToServer(path, user);
}
