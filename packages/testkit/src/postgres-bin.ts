import { existsSync, readdirSync } from "node:fs";
import { delimiter, join } from "node:path";

const DEBIAN_POSTGRES_ROOT = "/usr/lib/postgresql";

export interface PostgresInstallation {
  binDir: string;
  version: number;
}

/** The highest PostgreSQL major version installed the Debian way (/usr/lib/postgresql/<version>/bin). */
export function findPostgres(): PostgresInstallation {
  let entries: string[] = [];
  try {
    entries = readdirSync(DEBIAN_POSTGRES_ROOT);
  } catch {
    // no such directory: reported below
  }
  const versions = entries
    .filter((name) => /^\d+$/.test(name) && existsSync(join(DEBIAN_POSTGRES_ROOT, name, "bin", "postgres")))
    .map(Number)
    .sort((a, b) => b - a);
  const version = versions[0];
  if (version === undefined) {
    throw new Error(`no PostgreSQL server found in ${DEBIAN_POSTGRES_ROOT}/<version>/bin: install Debian's postgresql package`);
  }
  return { binDir: join(DEBIAN_POSTGRES_ROOT, String(version), "bin"), version };
}

/** Where psql, pgbench, initdb and postgres of the chosen version live. */
export function postgresBinDir(): string {
  return findPostgres().binDir;
}

/**
 * An environment for running psql/pgbench: PATH starts with postgresBinDir(), and inherited PG* variables
 * (PGHOST, PGPASSWORD, PGSSLMODE...) are dropped so that only the test's explicit settings apply.
 */
export function pgClientEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(process.env)) if (!name.startsWith("PG")) env[name] = value;
  env.PATH = [postgresBinDir(), process.env.PATH].filter(Boolean).join(delimiter);
  return { ...env, ...extra };
}
