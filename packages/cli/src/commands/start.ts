import { spawn } from "node:child_process";
import { closeSync, openSync, statSync } from "node:fs";
import { mkdir, open } from "node:fs/promises";
import { homedir } from "node:os";
import { join } from "node:path";
import { parseDuration, resolveConfigPath } from "@rdsd/config";
import { fileURLToPath } from "node:url";
import { controlSocketPath, logFilePath, stateDir } from "@rdsd/control";
import { unixSocketInUse } from "@rdsd/sock-diag";
import { runningDaemon } from "../daemon-client.js";
import { CliError, EXIT } from "../exit.js";
import { formatLogLine } from "../log-format.js";
import { paintFor, spinner } from "../terminal.js";
import { formatTargets } from "./status.js";
import { waitForTargets } from "./wait-targets.js";

const RDSD_BIN = fileURLToPath(new URL("../../bin/rdsd.js", import.meta.url));
const READY_TIMEOUT_MS = 60_000;
const DEFAULT_WAIT_MS = 60_000;

/**
 * `rdsd start [--wait[=TIMEOUT]]`: the daemon detached, returning once its control socket answers (with each
 * target's state), or failing with why. --wait returns only once every eager target is ready.
 */
export async function startCommand(opts: { config?: string; wait?: string | true }): Promise<number> {
  const waitMs = opts.wait === undefined ? undefined : opts.wait === true ? DEFAULT_WAIT_MS : parseWait(opts.wait);
  // Resolved here ($RDSD_CONFIG, XDG, ~ included), since the daemon runs from /.
  const configPath = resolveConfigPath({ ...(opts.config ? { flag: opts.config } : {}), env: process.env, home: homedir() });
  const socketPath = controlSocketPath();
  if (await unixSocketInUse(socketPath)) {
    const running = await runningDaemon();
    if (running && running.configFile !== configPath) {
      throw new CliError(
        `rdsd is already running with another config (${running.configFile}, pid ${running.pid}), not ${configPath}`,
        "`rdsd stop` first to run this one, or give it its own socket: RDSD_RUNTIME_DIR=$(mktemp -d) rdsd start --config ...",
      );
    }
    process.stdout.write(`rdsd is already running (socket ${socketPath})\n`);
    return waitMs === undefined ? EXIT.ok : settle(waitMs);
  }
  const state = stateDir();
  await mkdir(state, { recursive: true, mode: 0o700 });
  const logFile = logFilePath();
  const logOffset = sizeOf(logFile);
  // Whatever the daemon prints outside its log (a crash before the logger exists) lands here.
  const outPath = join(state, "rdsd.out");
  const out = openSync(outPath, "w", 0o600);
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
    return waitMs === undefined ? report() : settle(waitMs);
  }
  if (child.exitCode === null) child.kill("SIGTERM");
  const tail = [...(await readLogSince(logFile, logOffset)).map(formatLogLine), ...(await readText(outPath))].slice(-20);
  throw new CliError(`rdsd did not start: ${outcome.why}${tail.length ? `\n--- log ---\n${tail.join("\n")}` : ""}`, "fix what the log says, then `rdsd start` again (`rdsd daemon` runs it in the foreground)");
}

function parseWait(text: string): number {
  try {
    return parseDuration(text);
  } catch (err) {
    throw new CliError(`--wait: ${(err as Error).message}`, "for example --wait=90s or --wait=2m", EXIT.usage);
  }
}

/** Plain start: the daemon answers; each target's state as it is now (eager tunnels may still be connecting). */
async function report(): Promise<number> {
  const status = await runningDaemon();
  if (status) process.stdout.write(formatTargets(status.targets, paintFor(process.stdout)) + "\n");
  return EXIT.ok;
}

/** --wait: every eager target ready, or exit 1 naming each one that is not, with its state and error. */
async function settle(waitMs: number): Promise<number> {
  const spin = spinner(process.stderr, "waiting for the targets");
  const outcome = await waitForTargets(waitMs).finally(() => spin.stop());
  process.stdout.write(formatTargets(outcome.status.targets, paintFor(process.stdout)) + "\n");
  if (outcome.notReady.length === 0) return EXIT.ok;
  const why = outcome.notReady.map((t) => `${t.name} is ${t.state}${t.lastError ? `: ${t.lastError.message}` : ""}`);
  throw new CliError(
    `not every target is ready${outcome.timedOut ? ` after ${waitMs / 1000} s` : ""}: ${why.join("; ")}`,
    outcome.notReady.map((t) => t.lastError?.fix).find(Boolean) ?? "see `rdsd status` and `rdsd logs`; rdsd keeps trying",
  );
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
