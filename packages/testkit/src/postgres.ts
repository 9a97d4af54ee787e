import { spawn, type ChildProcess } from "node:child_process";
import { rmSync } from "node:fs";
import { chmod, chown, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import type { PemKeyPair } from "@rdsd/certs";
import { freePort } from "@rdsd/tunnel";
import { runCommand } from "./command.js";
import { onProcessExit } from "./exit-cleanup.js";
import { findPostgres } from "./postgres-bin.js";

export interface StartPostgresOptions {
  /** Server certificate and key; ssl=on when given. Default false. */
  tls?: PemKeyPair | false;
  /** Extra pg_hba.conf lines, placed before the defaults (local trust, TCP scram-sha-256). */
  hba?: string[];
  /** Extra server settings (password_encryption, log_connections...), passed as -c name=value. */
  settings?: Record<string, string>;
  /** Default 300. */
  maxConnections?: number;
}

export interface PostgresServer {
  host: "127.0.0.1";
  port: number;
  socketDir: string;
  dataDir: string;
  superuser: string;
  version: number;
  binDir: string;
  /** Runs SQL as the superuser over the unix socket, on one shared connection. */
  admin(sql: string, params?: unknown[]): Promise<pg.QueryResult>;
  /** The server log so far. */
  logText(): Promise<string>;
  /** Fast shutdown, waits for the exit, removes the temp dir; idempotent. */
  stop(): Promise<void>;
}

const SUPERUSER = "postgres";
const READY_LINE = "database system is ready to accept connections";
const START_DEADLINE_MS = 30_000;
const STOP_DEADLINE_MS = 15_000;
const PORT_ATTEMPTS = 5;

const DEFAULT_HBA = [
  "local all all trust",
  "host all all 127.0.0.1/32 scram-sha-256",
  "host all all ::1/128 scram-sha-256",
];

interface OsUser {
  uid: number;
  gid: number;
}

/** PostgreSQL refuses to run as root: as root, run it as Debian's `postgres` user instead. */
async function serverOsUser(): Promise<OsUser | undefined> {
  if (process.getuid?.() !== 0) return undefined;
  const { code, stdout } = await runCommand("getent", ["passwd", "postgres"]);
  const fields = stdout.trim().split(":");
  if (code !== 0 || fields.length < 4) {
    throw new Error("running as root, but there is no `postgres` OS user to run PostgreSQL as: install Debian's postgresql package");
  }
  return { uid: Number(fields[2]), gid: Number(fields[3]) };
}

/** Settings that trade durability for speed: these servers live for one test file. */
function baseSettings(port: number, socketDir: string, maxConnections: number): Record<string, string> {
  return {
    listen_addresses: "127.0.0.1",
    port: String(port),
    unix_socket_directories: socketDir,
    max_connections: String(maxConnections),
    shared_buffers: "32MB",
    fsync: "off",
    synchronous_commit: "off",
    full_page_writes: "off",
    huge_pages: "off",
    logging_collector: "off",
  };
}

export async function startPostgres(opts: StartPostgresOptions = {}): Promise<PostgresServer> {
  const { binDir, version } = findPostgres();
  const osUser = await serverOsUser();
  const rootDir = await mkdtemp(join(tmpdir(), "rdsd-pg-"));
  const forgetDir = onProcessExit(() => rmSync(rootDir, { recursive: true, force: true }));
  const dataDir = join(rootDir, "data");
  const socketDir = rootDir;
  const giveToServer = async (path: string) => {
    if (osUser) await chown(path, osUser.uid, osUser.gid);
  };

  try {
    await giveToServer(rootDir);
    const init = await runAs(join(binDir, "initdb"), ["-D", dataDir, "-U", SUPERUSER, "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync"], rootDir, osUser);
    if (init.code !== 0) throw new Error(`initdb failed (exit ${init.code}):\n${init.output}`);

    await writeServerFile(join(dataDir, "pg_hba.conf"), [...(opts.hba ?? []), ...DEFAULT_HBA].join("\n") + "\n", 0o600, giveToServer);
    const tlsSettings: Record<string, string> = {};
    if (opts.tls) {
      await writeServerFile(join(dataDir, "server.crt"), opts.tls.certPem, 0o644, giveToServer);
      // PostgreSQL refuses a key file that others can read.
      await writeServerFile(join(dataDir, "server.key"), opts.tls.keyPem, 0o600, giveToServer);
      Object.assign(tlsSettings, { ssl: "on", ssl_cert_file: join(dataDir, "server.crt"), ssl_key_file: join(dataDir, "server.key") });
    }

    for (let attempt = 1; ; attempt++) {
      const port = await freePort();
      const settings = { ...baseSettings(port, socketDir, opts.maxConnections ?? 300), ...tlsSettings, ...opts.settings };
      const args = ["-D", dataDir, ...Object.entries(settings).flatMap(([name, value]) => ["-c", `${name}=${value}`])];
      const running = await launch(join(binDir, "postgres"), args, rootDir, osUser);
      if (running.ok) {
        return await connectedServer({ port, socketDir, dataDir, rootDir, binDir, version, process: running.process, log: running.log, forgetDir });
      }
      const portTaken = /could not bind|Address already in use|could not create any TCP\/IP sockets/.test(running.log.join(""));
      if (!portTaken || attempt >= PORT_ATTEMPTS) throw new Error(`postgres did not start:\n${running.log.join("")}`);
    }
  } catch (error) {
    forgetDir();
    await rm(rootDir, { recursive: true, force: true });
    throw error;
  }
}

async function writeServerFile(path: string, content: string, mode: number, giveToServer: (path: string) => Promise<void>): Promise<void> {
  await writeFile(path, content, { mode });
  await chmod(path, mode);
  await giveToServer(path);
}

/** Environment for the server programs: no inherited PG* variables, a fixed locale. */
function serverEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(process.env)) if (!name.startsWith("PG") && !name.startsWith("LC_")) env[name] = value;
  return { ...env, LANG: "C" };
}

/**
 * The command line that runs a server program through setpriv: as root it switches to the postgres user
 * (PostgreSQL refuses root), and in every case the kernel sends SIGQUIT (immediate shutdown) to the program
 * if this process dies without calling stop(). setpriv execs the program, so the child pid is the program's.
 */
function asServerUser(cmd: string, args: string[], user: OsUser | undefined): [string, string[]] {
  const switchUser = user ? [`--reuid=${user.uid}`, `--regid=${user.gid}`, "--clear-groups"] : [];
  return ["setpriv", [...switchUser, "--pdeathsig", "SIGQUIT", "--", cmd, ...args]];
}

function runAs(cmd: string, args: string[], cwd: string, user: OsUser | undefined): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const [program, argv] = asServerUser(cmd, args, user);
    const child = spawn(program, argv, { cwd, env: serverEnv(), stdio: ["ignore", "pipe", "pipe"] });
    const output: string[] = [];
    child.stdout.setEncoding("utf8").on("data", (text: string) => output.push(text));
    child.stderr.setEncoding("utf8").on("data", (text: string) => output.push(text));
    child.once("error", (error) => reject(new Error(`cannot run ${program}: ${error.message}`)));
    child.once("close", (code) => resolve({ code, output: output.join("") }));
  });
}

type Launch = { ok: true; process: ChildProcess; log: string[] } | { ok: false; log: string[] };

/** Starts the postmaster and resolves once its log says it is ready, or once it has exited (failed). */
function launch(cmd: string, args: string[], cwd: string, user: OsUser | undefined): Promise<Launch> {
  return new Promise((resolve, reject) => {
    const [program, argv] = asServerUser(cmd, args, user);
    const child = spawn(program, argv, { cwd, env: serverEnv(), stdio: ["ignore", "pipe", "pipe"] });
    const log: string[] = [];
    let settled = false;
    const settle = (result: Launch | Error) => {
      if (settled) return;
      settled = true;
      clearTimeout(deadline);
      if (result instanceof Error) reject(result);
      else resolve(result);
    };
    const deadline = setTimeout(() => {
      child.kill("SIGQUIT");
      settle(new Error(`postgres was not ready within ${START_DEADLINE_MS} ms:\n${log.join("")}`));
    }, START_DEADLINE_MS);
    const onText = (text: string) => {
      log.push(text);
      // The line may arrive split over chunks, so the whole log is searched (only until it is found).
      if (!settled && log.join("").includes(READY_LINE)) settle({ ok: true, process: child, log });
    };
    child.stdout.setEncoding("utf8").on("data", onText);
    child.stderr.setEncoding("utf8").on("data", onText);
    child.once("error", (error) => settle(new Error(`cannot run ${program}: ${error.message}`)));
    child.once("exit", () => settle({ ok: false, log }));
  });
}

interface ServerParts {
  port: number;
  socketDir: string;
  dataDir: string;
  rootDir: string;
  binDir: string;
  version: number;
  process: ChildProcess;
  log: string[];
  forgetDir: () => void;
}

async function connectedServer(parts: ServerParts): Promise<PostgresServer> {
  const postmaster = parts.process;
  const exited = new Promise<void>((resolve) => {
    if (postmaster.exitCode !== null || postmaster.signalCode !== null) resolve();
    else postmaster.once("exit", () => resolve());
  });
  // If the test process ends without stop(): immediate shutdown, so no server outlives it.
  const forgetServer = onProcessExit(() => postmaster.kill("SIGQUIT"));

  const adminClient = new pg.Client({ host: parts.socketDir, port: parts.port, user: SUPERUSER, database: "postgres" });
  adminClient.on("error", () => {}); // the server going away during stop() is expected
  let adminConnected: Promise<void> | undefined;

  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> =>
    (stopping ??= (async () => {
      if (adminConnected) await adminConnected.then(() => adminClient.end()).catch(() => {});
      postmaster.kill("SIGINT"); // fast shutdown: disconnect clients, then exit cleanly
      const timer = setTimeout(() => postmaster.kill("SIGKILL"), STOP_DEADLINE_MS);
      await exited;
      clearTimeout(timer);
      forgetServer();
      parts.forgetDir();
      await rm(parts.rootDir, { recursive: true, force: true });
    })());

  const server: PostgresServer = {
    host: "127.0.0.1",
    port: parts.port,
    socketDir: parts.socketDir,
    dataDir: parts.dataDir,
    superuser: SUPERUSER,
    version: parts.version,
    binDir: parts.binDir,
    admin: async (sql, params) => {
      if (stopping) throw new Error("postgres server is stopped");
      await (adminConnected ??= adminClient.connect());
      return adminClient.query(sql, params);
    },
    logText: async () => parts.log.join(""),
    stop,
  };
  return server;
}
