import { readdir, readlink } from "node:fs/promises";
import { sep } from "node:path";

/**
 * Pids of the processes whose working directory is `dir` or inside it (Linux /proc). Every PostgreSQL process
 * works in its data directory, so this finds a server's postmaster and backends alike: tests use it to prove
 * that nothing is left running.
 */
export async function processesWorkingIn(dir: string): Promise<number[]> {
  const pids: number[] = [];
  for (const entry of await readdir("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    let cwd: string;
    try {
      cwd = await readlink(`/proc/${entry}/cwd`);
    } catch {
      continue; // ended while we looked, or not ours to inspect
    }
    if (cwd === dir || cwd.startsWith(dir + sep)) pids.push(Number(entry));
  }
  return pids;
}
