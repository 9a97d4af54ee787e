import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import type { ServerUser } from "./server-user.js";

const SETPRIV_PATHS = ["/usr/bin/setpriv", "/bin/setpriv"];

/** A program and its arguments, ready for spawn (no shell). */
export interface ServerCommand {
  file: string;
  args: string[];
}

/**
 * The command line that runs a server program (initdb, postgres...) through util-linux setpriv: with a user
 * it switches to it (--reuid/--regid/--clear-groups), and in every case the kernel sends SIGQUIT (immediate
 * shutdown) to the program if this process dies without stopping it. setpriv execs the program, so the child
 * pid is the program's. Without setpriv (not Linux) the program runs directly, which needs no user switch.
 */
export function serverCommand(program: string, args: readonly string[], user: ServerUser | undefined): ServerCommand {
  const setpriv = SETPRIV_PATHS.find((path) => existsSync(path));
  if (!setpriv) {
    if (user) throw new Error("running PostgreSQL as the postgres user needs setpriv (util-linux), which is not installed");
    return { file: program, args: [...args] };
  }
  const switchUser = user ? [`--reuid=${user.uid}`, `--regid=${user.gid}`, "--clear-groups"] : [];
  return { file: setpriv, args: [...switchUser, "--pdeathsig", "SIGQUIT", "--", program, ...args] };
}

/** Environment for the server programs: no inherited PG* or LC_* variables, a fixed locale. */
export function serverEnv(base: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(base)) if (!name.startsWith("PG") && !name.startsWith("LC_")) env[name] = value;
  return { ...env, LANG: "C" };
}

export interface RunServerProgramOptions {
  /** Run as this user (from postgresOsUser()). */
  user: ServerUser | undefined;
  /** A directory the user can enter: initdb and postgres fail when they cannot read their working directory. */
  cwd: string;
  /** Written to stdin, which is then closed (postgres --single reads its statements there). */
  input?: string;
  /** Killed with SIGKILL after this long. Default 120 s. */
  timeoutMs?: number;
}

export interface ServerProgramResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** stdout and stderr, interleaved as they arrived. */
  output: string;
  timedOut: boolean;
}

/** Runs a server program to completion through serverCommand() with serverEnv(); a non-zero exit is a result. */
export function runServerProgram(program: string, args: readonly string[], opts: RunServerProgramOptions): Promise<ServerProgramResult> {
  const { file, args: argv } = serverCommand(program, args, opts.user);
  return new Promise((resolve, reject) => {
    const child = spawn(file, argv, { cwd: opts.cwd, env: serverEnv(), stdio: ["pipe", "pipe", "pipe"] });
    child.stdin.on("error", () => {}); // the program may exit without reading its input (EPIPE)
    child.stdin.end(opts.input);
    let output = "";
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill("SIGKILL");
    }, opts.timeoutMs ?? 120_000);
    child.stdout.setEncoding("utf8").on("data", (text: string) => (output += text));
    child.stderr.setEncoding("utf8").on("data", (text: string) => (output += text));
    child.once("error", (error) => {
      clearTimeout(timer);
      reject(new Error(`cannot run ${file}: ${error.message}`));
    });
    child.once("close", (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, output, timedOut });
    });
  });
}
