import { existsSync } from "node:fs";
import { findPostgres, runCommand } from "@rdsd/testkit";

export const PGBOUNCER_BIN = "/usr/sbin/pgbouncer";

/**
 * Makes sure PostgreSQL (server, psql, pgbench) and pgbouncer from Debian's packages are installed,
 * installing the missing ones with apt-get when running as root. Returns what it installed.
 */
export async function ensureDebianPackages(log: (line: string) => void): Promise<string[]> {
  const missing: string[] = [];
  try {
    findPostgres();
  } catch {
    missing.push("postgresql", "postgresql-contrib");
  }
  if (!existsSync(PGBOUNCER_BIN)) missing.push("pgbouncer");
  if (missing.length === 0) return [];
  if (process.getuid?.() !== 0) {
    throw new Error(`missing Debian packages: ${missing.join(" ")}; install them (sudo apt-get install -y ${missing.join(" ")}) or run the bench as root`);
  }
  log(`installing ${missing.join(" ")} with apt-get...`);
  const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
  const update = await runCommand("apt-get", ["update"], { env, timeoutMs: 300_000 });
  if (update.code !== 0) throw new Error(`apt-get update failed:\n${update.stderr}`);
  const install = await runCommand("apt-get", ["install", "-y", "--no-install-recommends", ...missing], { env, timeoutMs: 600_000 });
  if (install.code !== 0) throw new Error(`apt-get install ${missing.join(" ")} failed:\n${install.stderr}`);
  // Debian starts a cluster and pgbouncer as services on install; the bench runs its own and needs neither.
  return missing;
}
