import { homedir, tmpdir } from "node:os";
import { join } from "node:path";

/**
 * Where rdsd keeps state that outlives a run (local CA, RDS CA bundle, logs):
 * $RDSD_STATE_DIR, else $XDG_STATE_HOME/rdsd, else ~/.local/state/rdsd.
 */
export function stateDir(env: NodeJS.ProcessEnv = process.env, home = homedir()): string {
  if (env.RDSD_STATE_DIR) return env.RDSD_STATE_DIR;
  if (env.XDG_STATE_HOME) return join(env.XDG_STATE_HOME, "rdsd");
  return join(home, ".local", "state", "rdsd");
}

/**
 * The directory of the control socket: $RDSD_RUNTIME_DIR, else $XDG_RUNTIME_DIR/rdsd, else a private
 * per-user directory in the temp dir (per-user already on macOS; named after the uid on Linux).
 */
export function runtimeDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.RDSD_RUNTIME_DIR) return env.RDSD_RUNTIME_DIR;
  if (env.XDG_RUNTIME_DIR) return join(env.XDG_RUNTIME_DIR, "rdsd");
  return join(tmpdir(), `rdsd-${process.getuid?.() ?? "user"}`);
}

export function controlSocketPath(env: NodeJS.ProcessEnv = process.env): string {
  return join(runtimeDir(env), "rdsd.sock");
}

/** The daemon's JSON-lines log (rotated by size: rdsd.log, rdsd1.log, ...). */
export function logFilePath(env: NodeJS.ProcessEnv = process.env, home = homedir()): string {
  return join(stateDir(env, home), "rdsd.log");
}
