import { homedir } from "node:os";
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
