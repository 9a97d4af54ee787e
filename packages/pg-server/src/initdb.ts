import { dirname, join } from "node:path";
import { runServerProgram } from "./command.js";
import type { ServerUser } from "./server-user.js";

export interface InitdbOptions {
  user: ServerUser | undefined;
  /** The bootstrap superuser. Default "postgres". */
  superuser?: string;
  /** Default: the parent of dataDir, which the caller created and gave to the user. */
  cwd?: string;
}

/**
 * Creates a throwaway cluster in dataDir: trust authentication (callers write their own pg_hba.conf), UTF8,
 * the C locale (the same on every machine), no fsync (nothing here must survive a crash).
 */
export async function initdb(binDir: string, dataDir: string, opts: InitdbOptions): Promise<void> {
  const args = ["-D", dataDir, "-U", opts.superuser ?? "postgres", "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync"];
  const result = await runServerProgram(join(binDir, "initdb"), args, { user: opts.user, cwd: opts.cwd ?? dirname(dataDir) });
  if (result.code !== 0) {
    const how = result.timedOut ? "timed out" : `exit ${result.code ?? result.signal}`;
    throw new Error(`initdb failed (${how}):\n${result.output}`);
  }
}
