import { spawn } from "node:child_process";
import { once } from "node:events";
import { setTimeout as delay } from "node:timers/promises";
import { dirname, join } from "node:path";
import { serverCommand, serverEnv } from "./command.js";
import type { ServerUser } from "./server-user.js";

const READY_LINE = "database system is ready to accept connections";

export interface StartPostmasterOptions {
  user: ServerUser | undefined;
  /** Server settings, passed as -c name=value (they override postgresql.conf). */
  settings?: Record<string, string>;
  /** Default: the parent of dataDir. */
  cwd?: string;
  /** Default 30 s; past it the server is shut down (SIGQUIT) and the start fails. */
  readyTimeoutMs?: number;
}

/** A running postmaster started by startPostmaster(). */
export interface Postmaster {
  readonly pid: number;
  /** Everything the server has written (stderr and stdout) since it started; kept in memory. */
  log(): string;
  /** Resolves when the postmaster has exited. */
  readonly exited: Promise<void>;
  /** Fast shutdown (SIGINT: clients disconnected, clean exit), SIGKILL past deadlineMs (default 15 s); resolves on exit; idempotent. */
  stop(deadlineMs?: number): Promise<void>;
  /** Immediate shutdown (SIGQUIT) without waiting: for synchronous process-exit hooks. */
  quit(): void;
}

/** The server did not become ready: it exited first (`exited`), ran past the deadline, or could not be run. */
export class PostmasterStartError extends Error {
  constructor(
    message: string,
    /** The server's output, to tell why (a port in use, a bad setting...). */
    readonly log: string,
    readonly exited: boolean,
  ) {
    super(`${message}:\n${log}`);
    this.name = "PostmasterStartError";
  }
}

/**
 * Starts `postgres -D dataDir` through serverCommand() and resolves once its log says it accepts connections.
 * Rejects with PostmasterStartError, leaving nothing running, when it exits first or is not ready in time.
 */
export async function startPostmaster(binDir: string, dataDir: string, opts: StartPostmasterOptions): Promise<Postmaster> {
  const settings = Object.entries(opts.settings ?? {}).flatMap(([name, value]) => ["-c", `${name}=${value}`]);
  const { file, args } = serverCommand(join(binDir, "postgres"), ["-D", dataDir, ...settings], opts.user);
  const child = spawn(file, args, { cwd: opts.cwd ?? dirname(dataDir), env: serverEnv(), stdio: ["ignore", "pipe", "pipe"] });

  let log = "";
  let spawnError: Error | undefined;
  // 'exit' means the postmaster is gone; 'close' would also wait for backends that still hold its pipes.
  const exited = new Promise<void>((resolve) => {
    child.once("exit", () => resolve());
    child.once("error", (error) => {
      spawnError = error;
      resolve();
    });
  });
  const closed = once(child, "close").catch(() => {});
  let isReady = false;
  let onReady = () => {};
  const ready = new Promise<void>((resolve) => (onReady = resolve));
  const onText = (text: string) => {
    const searchFrom = Math.max(0, log.length - READY_LINE.length); // the line may arrive split over chunks
    log += text;
    if (!isReady && log.includes(READY_LINE, searchFrom)) {
      isReady = true;
      onReady();
    }
  };
  // Always read both pipes, so a chatty server never blocks on a full one.
  child.stdout.setEncoding("utf8").on("data", onText);
  child.stderr.setEncoding("utf8").on("data", onText);

  const terminate = async (signal: NodeJS.Signals, deadlineMs: number) => {
    child.kill(signal);
    const timer = setTimeout(() => child.kill("SIGKILL"), deadlineMs);
    await exited;
    clearTimeout(timer);
  };
  const readyTimeoutMs = opts.readyTimeoutMs ?? 30_000;
  let deadline: NodeJS.Timeout | undefined;
  const outcome = await Promise.race([
    ready.then(() => "ready" as const),
    exited.then(() => "exited" as const),
    new Promise<"late">((resolve) => (deadline = setTimeout(() => resolve("late"), readyTimeoutMs))),
  ]);
  clearTimeout(deadline);
  if (outcome === "late") {
    await terminate("SIGQUIT", 15_000);
    throw new PostmasterStartError(`postgres was not ready within ${readyTimeoutMs} ms`, log, false);
  }
  if (outcome === "exited") {
    // 'exit' can come before the last output: read it all, unless a child left behind keeps the pipes open.
    await Promise.race([closed, delay(2_000, undefined, { ref: false })]);
    if (spawnError) throw new PostmasterStartError(`cannot run ${file}: ${spawnError.message}`, log, false);
    throw new PostmasterStartError(`postgres exited before it was ready (${child.exitCode ?? child.signalCode})`, log, true);
  }

  let stopping: Promise<void> | undefined;
  return {
    pid: child.pid!,
    log: () => log,
    exited,
    stop: (deadlineMs = 15_000) => (stopping ??= terminate("SIGINT", deadlineMs)),
    quit: () => void child.kill("SIGQUIT"),
  };
}
