import { execFileSync, spawn, type ChildProcess } from "node:child_process";

export interface RunCommandOptions {
  env?: NodeJS.ProcessEnv;
  /** Written to stdin, which is then closed. Without it stdin is closed at once. */
  input?: string | Buffer;
  /** Killed with SIGKILL after this long. Default 30 s. */
  timeoutMs?: number;
  cwd?: string;
}

export interface CommandResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** True when the command was killed because it ran past timeoutMs. */
  timedOut: boolean;
}

/** What a started child printed and how it ended; stdout stays raw bytes (output in other encodings is checked byte for byte). */
export interface ChildExit extends Omit<CommandResult, "stdout"> {
  stdout: Buffer;
}

/** Runs a program (no shell) to completion and collects its output; a non-zero exit is a result, not an error. */
export async function runCommand(cmd: string, args: readonly string[], opts: RunCommandOptions = {}): Promise<CommandResult> {
  const child = spawn(cmd, args, { env: opts.env ?? process.env, cwd: opts.cwd, stdio: ["pipe", "pipe", "pipe"] });
  child.stdin.on("error", () => {}); // the program may exit without reading its input (EPIPE)
  child.stdin.end(opts.input);
  let exit: ChildExit;
  try {
    exit = await waitForExit(child, opts.timeoutMs);
  } catch (error) {
    throw new Error(`cannot run ${cmd}: ${(error as Error).message}`);
  }
  return { ...exit, stdout: exit.stdout.toString("utf8") };
}

/**
 * Waits for a started child to exit (SIGKILL after timeoutMs, default 30 s), collecting whatever it writes to
 * piped stdout and stderr. Rejects only when the program could not be started.
 */
export function waitForExit(child: ChildProcess, timeoutMs = 30_000): Promise<ChildExit> {
  return new Promise((resolve, reject) => {
    const stdout: Buffer[] = [];
    const stderr: Buffer[] = [];
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill("SIGKILL");
    }, timeoutMs);
    child.stdout?.on("data", (chunk: Buffer) => stdout.push(chunk));
    child.stderr?.on("data", (chunk: Buffer) => stderr.push(chunk));
    child.once("error", (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.once("close", (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout: Buffer.concat(stdout), stderr: Buffer.concat(stderr).toString("utf8"), timedOut });
    });
  });
}

/** Whether `tool` is on PATH (as the shell finds it): tests of optional tools skip without it. */
export function hasCommand(tool: string): boolean {
  try {
    execFileSync("sh", ["-c", `command -v ${tool}`], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}
