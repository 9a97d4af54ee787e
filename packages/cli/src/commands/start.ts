import { spawn } from "node:child_process";
import { closeSync, openSync, statSync } from "node:fs";
import { mkdir, open } from "node:fs/promises";
import { homedir } from "node:os";
import { join } from "node:path";
import { resolveConfigPath } from "@rdsd/config";
import { fileURLToPath } from "node:url";
import { answers, controlSocketPath, logFilePath, stateDir } from "@rdsd/control";
import { CliError, EXIT } from "../exit.js";
import { formatLogLine } from "../log-format.js";
import { spinner } from "../terminal.js";

const RDSD_BIN = fileURLToPath(new URL("../../bin/rdsd.js", import.meta.url));
const READY_TIMEOUT_MS = 60_000;

/** `rdsd start`: the daemon detached, returning once its control socket answers, or failing with why. */
export async function startCommand(opts: { config?: string }): Promise<number> {
  const socketPath = controlSocketPath();
  if (await answers(socketPath)) {
    process.stdout.write(`rdsd is already running (socket ${socketPath})\n`);
    return EXIT.ok;
  }
  const state = stateDir();
  await mkdir(state, { recursive: true, mode: 0o700 });
  const logFile = logFilePath();
  const logOffset = sizeOf(logFile);
  // Whatever the daemon prints outside its log (a crash before the logger exists) lands here.
  const outPath = join(state, "rdsd.out");
  const out = openSync(outPath, "w", 0o600);
  // Resolved here ($RDSD_CONFIG, XDG, ~ included), since the daemon runs from /.
  const configPath = resolveConfigPath({ ...(opts.config ? { flag: opts.config } : {}), env: process.env, home: homedir() });
  const args = [RDSD_BIN, "daemon", "--background", "--config", configPath];
  // From /, so the daemon never keeps the caller's directory busy.
  const child = spawn(process.execPath, args, { detached: true, cwd: "/", stdio: ["ignore", out, out, "ipc"], env: process.env });
  closeSync(out);

  const spin = spinner(process.stderr, "starting rdsd");
  const outcome = await new Promise<{ ready: true; pid: number } | { ready: false; why: string }>((resolve) => {
    const timer = setTimeout(() => resolve({ ready: false, why: `not ready after ${READY_TIMEOUT_MS / 1000} s` }), READY_TIMEOUT_MS);
    child.once("message", (message: { ready?: boolean; pid?: number }) => {
      clearTimeout(timer);
      if (message.ready) resolve({ ready: true, pid: message.pid ?? child.pid! });
    });
    child.once("exit", (code, signal) => {
      clearTimeout(timer);
      resolve({ ready: false, why: signal ? `the daemon was killed by ${signal}` : `the daemon exited with code ${code}` });
    });
    child.once("error", (err) => resolve({ ready: false, why: err.message }));
  });
  spin.stop();
  if (outcome.ready) {
    child.disconnect?.();
    child.unref();
    process.stdout.write(`rdsd started (pid ${outcome.pid}, socket ${socketPath}, log ${logFile})\n`);
    return EXIT.ok;
  }
  if (child.exitCode === null) child.kill("SIGTERM");
  const tail = [...(await readLogSince(logFile, logOffset)).map(formatLogLine), ...(await readText(outPath))].slice(-20);
  throw new CliError(`rdsd did not start: ${outcome.why}${tail.length ? `\n--- log ---\n${tail.join("\n")}` : ""}`, "fix what the log says, then `rdsd start` again (`rdsd daemon` runs it in the foreground)");
}

function sizeOf(path: string): number {
  try {
    return statSync(path).size;
  } catch {
    return 0;
  }
}

async function readLogSince(path: string, offset: number): Promise<string[]> {
  const text = await readFrom(path, offset);
  return text.split("\n").filter(Boolean);
}

async function readText(path: string): Promise<string[]> {
  return (await readFrom(path, 0)).split("\n").filter(Boolean);
}

async function readFrom(path: string, offset: number): Promise<string> {
  try {
    const handle = await open(path, "r");
    try {
      const { size } = await handle.stat();
      const length = Math.max(0, Math.min(size - offset, 256 * 1024));
      const buffer = Buffer.alloc(length);
      await handle.read(buffer, 0, length, size - length);
      return buffer.toString("utf8");
    } finally {
      await handle.close();
    }
  } catch {
    return "";
  }
}
