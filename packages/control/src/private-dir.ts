import { chmod, lstat, mkdir } from "node:fs/promises";

/**
 * Makes `dir` a directory only this user can enter (0700). Refuses a directory owned by someone else
 * or a symlink: the control socket must not be reachable, or replaceable, by another user.
 * Resolves true when it created `dir` itself (so its owner may remove it again).
 */
export async function ensurePrivateDir(dir: string): Promise<boolean> {
  const created = (await mkdir(dir, { recursive: true, mode: 0o700 })) !== undefined;
  const info = await lstat(dir);
  if (!info.isDirectory()) throw new Error(`${dir} is not a directory: remove it, or set RDSD_RUNTIME_DIR to another place`);
  const uid = process.getuid?.();
  if (uid !== undefined && info.uid !== uid) {
    throw new Error(`${dir} belongs to another user (uid ${info.uid}): set RDSD_RUNTIME_DIR to a directory of your own`);
  }
  if ((info.mode & 0o777) !== 0o700) await chmod(dir, 0o700);
  return created;
}
