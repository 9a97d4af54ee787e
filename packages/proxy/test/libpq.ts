import { spawn, type ChildProcess, type StdioOptions } from "node:child_process";
import { join } from "node:path";
import { pgClientEnv, postgresBinDir } from "@rdsd/testkit";

/** A libpq connection string from settings (values quoted as libpq wants). */
export function conninfo(settings: Record<string, string | number>): string {
  return Object.entries(settings)
    .map(([k, v]) => `${k}='${String(v).replaceAll("\\", "\\\\").replaceAll("'", "\\'")}'`)
    .join(" ");
}

export interface ClientRun {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** Raw bytes: psql output in a client encoding other than UTF-8 must be checked byte for byte. */
  stdout: Buffer;
  stderr: string;
  timedOut: boolean;
}

export interface ClientRunOptions {
  env?: NodeJS.ProcessEnv;
  /** Bytes for stdin (then closed), or a file descriptor to read stdin from. Without it stdin is closed at once. */
  input?: Buffer | number;
  /** A file descriptor to write stdout to, instead of collecting it. */
  stdoutFd?: number;
  timeoutMs?: number;
}

/** Starts psql or pgbench (Debian's, of the server's version) without waiting for it. */
export function startClient(program: "psql" | "pgbench", args: readonly string[], opts: ClientRunOptions = {}): ChildProcess {
  const stdio: StdioOptions = [typeof opts.input === "number" ? opts.input : "pipe", opts.stdoutFd ?? "pipe", "pipe"];
  const child = spawn(join(postgresBinDir(), program), args, { env: pgClientEnv(opts.env), stdio });
  child.stdin?.on("error", () => {}); // the program may exit without reading its input
  child.stdin?.end(typeof opts.input === "number" ? undefined : opts.input);
  return child;
}

/** Waits for a started client to exit and collects what it printed. */
export function finished(child: ChildProcess, timeoutMs = 30_000): Promise<ClientRun> {
  return new Promise((resolve, reject) => {
    const stdout: Buffer[] = [];
    const stderr: Buffer[] = [];
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill("SIGKILL");
    }, timeoutMs);
    child.stdout?.on("data", (c: Buffer) => stdout.push(c));
    child.stderr?.on("data", (c: Buffer) => stderr.push(c));
    child.once("error", (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.once("close", (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout: Buffer.concat(stdout), stderr: Buffer.concat(stderr).toString("utf8"), timedOut });
    });
  });
}

export function runClient(program: "psql" | "pgbench", args: readonly string[], opts: ClientRunOptions = {}): Promise<ClientRun> {
  return finished(startClient(program, args, opts), opts.timeoutMs);
}

/** psql without ~/.psqlrc, unaligned tuples-only output, never prompting, stopping at the first error. */
export function psql(connection: string, commands: readonly string[], opts: ClientRunOptions = {}): Promise<ClientRun> {
  return runClient("psql", ["-X", "-w", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", connection, ...commands.flatMap((c) => ["-c", c])], opts);
}
