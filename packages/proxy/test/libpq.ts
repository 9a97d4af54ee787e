import { spawn, type ChildProcess, type StdioOptions } from "node:child_process";
import { join } from "node:path";
import { pgClientEnv, postgresBinDir, waitForExit as finished, type ChildExit as ClientRun } from "@rdsd/testkit";

// A started client is waited for like any child: `finished` collects raw stdout bytes (psql output in a client
// encoding other than UTF-8 is checked byte for byte).
export { finished, type ClientRun };

/** A libpq connection string from settings (values quoted as libpq wants). */
export function conninfo(settings: Record<string, string | number>): string {
  return Object.entries(settings)
    .map(([k, v]) => `${k}='${String(v).replaceAll("\\", "\\\\").replaceAll("'", "\\'")}'`)
    .join(" ");
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

export function runClient(program: "psql" | "pgbench", args: readonly string[], opts: ClientRunOptions = {}): Promise<ClientRun> {
  return finished(startClient(program, args, opts), opts.timeoutMs);
}

/** psql without ~/.psqlrc, unaligned tuples-only output, never prompting, stopping at the first error. */
export function psql(connection: string, commands: readonly string[], opts: ClientRunOptions = {}): Promise<ClientRun> {
  return runClient("psql", ["-X", "-w", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", connection, ...commands.flatMap((c) => ["-c", c])], opts);
}
