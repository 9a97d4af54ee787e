import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { readdir, readFile } from "node:fs/promises";

/** Kernel clock ticks per second for /proc/<pid>/stat times (Linux: 100 on every supported arch). */
const CLOCK_TICKS = 100;

export interface ProcessSample {
  rssBytes: number;
  /** User + system CPU time consumed so far. */
  cpuSeconds: number;
  /** Voluntary + involuntary context switches of all its threads so far: each is a wake-up or a preemption. */
  contextSwitches: number;
}

/** Memory and CPU of a live process from /proc. */
export async function sampleProcess(pid: number): Promise<ProcessSample> {
  const status = await readFile(`/proc/${pid}/status`, "utf8");
  const rss = /^VmRSS:\s+(\d+) kB/m.exec(status);
  const stat = await readFile(`/proc/${pid}/stat`, "utf8");
  // Fields after the parenthesised command name (which may contain spaces): utime is field 14, stime 15.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const utime = Number(fields[11]);
  const stime = Number(fields[12]);
  return { rssBytes: rss ? Number(rss[1]) * 1024 : Number.NaN, cpuSeconds: (utime + stime) / CLOCK_TICKS, contextSwitches: await contextSwitches(pid) };
}

async function contextSwitches(pid: number): Promise<number> {
  let total = 0;
  for (const task of await readdir(`/proc/${pid}/task`).catch(() => [] as string[])) {
    const status = await readFile(`/proc/${pid}/task/${task}/status`, "utf8").catch(() => "");
    for (const m of status.matchAll(/^(?:non)?voluntary_ctxt_switches:\s+(\d+)$/gm)) total += Number(m[1]);
  }
  return total;
}

export interface RunningProcess {
  child: ChildProcess;
  pid: number;
  /** Everything it wrote so far (stdout and stderr, capped). */
  output(): string;
  /** SIGTERM, then SIGKILL after the deadline; resolves once it has exited. Idempotent. */
  stop(deadlineMs?: number): Promise<void>;
}

const OUTPUT_CAP = 256 * 1024;

/**
 * Starts a long-running program. With `asUser`, it runs as that OS user; in every case setpriv makes the
 * kernel kill it if the harness dies first, so no server outlives a crashed run.
 */
export function startProcess(
  cmd: string,
  args: readonly string[],
  opts: { env?: NodeJS.ProcessEnv; cwd?: string; asUser?: { uid: number; gid: number } } = {},
): RunningProcess {
  const switchUser = opts.asUser ? [`--reuid=${opts.asUser.uid}`, `--regid=${opts.asUser.gid}`, "--clear-groups"] : [];
  const child = spawn("setpriv", [...switchUser, "--pdeathsig", "SIGKILL", "--", cmd, ...args], {
    env: opts.env ?? process.env,
    cwd: opts.cwd,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let text = "";
  const keep = (chunk: Buffer) => {
    if (text.length < OUTPUT_CAP) text += chunk.toString("utf8");
  };
  child.stdout!.on("data", keep);
  child.stderr!.on("data", keep);
  const exited = child.exitCode !== null ? Promise.resolve() : once(child, "exit").then(() => undefined);
  let stopping: Promise<void> | undefined;
  return {
    child,
    pid: child.pid ?? -1,
    output: () => text,
    stop: (deadlineMs = 10_000) =>
      (stopping ??= (async () => {
        if (child.exitCode !== null || child.signalCode !== null) return;
        child.kill("SIGTERM");
        const timer = setTimeout(() => child.kill("SIGKILL"), deadlineMs);
        await exited;
        clearTimeout(timer);
      })()),
  };
}

/** Resolves once `ready(output)` holds; rejects if the process exits first or the deadline passes. */
export function waitForOutput(proc: RunningProcess, ready: (output: string) => boolean, what: string, deadlineMs = 30_000): Promise<void> {
  return new Promise((resolve, reject) => {
    const check = () => {
      if (ready(proc.output())) finish();
    };
    const onExit = (code: number | null) => finish(new Error(`${what} exited (${code}) before it was ready:\n${proc.output().slice(-4000)}`));
    const timer = setTimeout(() => finish(new Error(`${what} was not ready within ${deadlineMs} ms:\n${proc.output().slice(-4000)}`)), deadlineMs);
    const finish = (error?: Error) => {
      clearTimeout(timer);
      proc.child.stdout!.off("data", check);
      proc.child.stderr!.off("data", check);
      proc.child.off("exit", onExit);
      if (error) reject(error);
      else resolve();
    };
    proc.child.stdout!.on("data", check);
    proc.child.stderr!.on("data", check);
    proc.child.once("exit", onExit);
    check();
  });
}
