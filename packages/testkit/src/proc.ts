import { readdir, readFile, readlink } from "node:fs/promises";
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

/** Pids of the processes whose parent is `pid` (Linux /proc): a daemon's plugin children, for instance. */
export async function childrenOf(pid: number): Promise<number[]> {
  const found: number[] = [];
  for (const entry of (await readdir("/proc")).filter((e) => /^\d+$/.test(e))) {
    const stat = await readFile(`/proc/${entry}/stat`, "utf8").catch(() => "");
    // The parent pid is the second field after the command name, which is in parentheses and may hold spaces.
    const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
    if (ppid === pid) found.push(Number(entry));
  }
  return found;
}
