import { rmSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import type { PemKeyPair } from "@rdsd/certs";
import { giveToServer, initdb, postgresOsUser, PostmasterStartError, startPostmaster, writeServerFile, type Postmaster } from "@rdsd/pg-server";
import { freePort } from "@rdsd/tunnel";
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
const PORT_ATTEMPTS = 5;

const DEFAULT_HBA = [
  "local all all trust",
  "host all all 127.0.0.1/32 scram-sha-256",
  "host all all ::1/128 scram-sha-256",
];

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
  const user = await postgresOsUser();
  const rootDir = await mkdtemp(join(tmpdir(), "rdsd-pg-"));
  const forgetDir = onProcessExit(() => rmSync(rootDir, { recursive: true, force: true }));
  const dataDir = join(rootDir, "data");
  const socketDir = rootDir;

  try {
    await giveToServer(rootDir, user);
    await initdb(binDir, dataDir, { user, superuser: SUPERUSER });

    await writeServerFile(join(dataDir, "pg_hba.conf"), [...(opts.hba ?? []), ...DEFAULT_HBA].join("\n") + "\n", 0o600, user);
    const tlsSettings: Record<string, string> = {};
    if (opts.tls) {
      await writeServerFile(join(dataDir, "server.crt"), opts.tls.certPem, 0o644, user);
      // PostgreSQL refuses a key file that others can read.
      await writeServerFile(join(dataDir, "server.key"), opts.tls.keyPem, 0o600, user);
      Object.assign(tlsSettings, { ssl: "on", ssl_cert_file: join(dataDir, "server.crt"), ssl_key_file: join(dataDir, "server.key") });
    }

    for (let attempt = 1; ; attempt++) {
      const port = await freePort();
      const settings = { ...baseSettings(port, socketDir, opts.maxConnections ?? 300), ...tlsSettings, ...opts.settings };
      try {
        const postmaster = await startPostmaster(binDir, dataDir, { user, settings });
        return connectedServer({ port, socketDir, dataDir, rootDir, binDir, version, postmaster, forgetDir });
      } catch (error) {
        // Another process may take the free port before postgres binds it: try another one.
        const portTaken = error instanceof PostmasterStartError && error.exited && /could not bind|Address already in use|could not create any TCP\/IP sockets/.test(error.log);
        if (!portTaken || attempt >= PORT_ATTEMPTS) throw error;
      }
    }
  } catch (error) {
    forgetDir();
    await rm(rootDir, { recursive: true, force: true });
    throw error;
  }
}

interface ServerParts {
  port: number;
  socketDir: string;
  dataDir: string;
  rootDir: string;
  binDir: string;
  version: number;
  postmaster: Postmaster;
  forgetDir: () => void;
}

function connectedServer(parts: ServerParts): PostgresServer {
  const { postmaster } = parts;
  // If the test process ends without stop(): immediate shutdown, so no server outlives it.
  const forgetServer = onProcessExit(() => postmaster.quit());

  const adminClient = new pg.Client({ host: parts.socketDir, port: parts.port, user: SUPERUSER, database: "postgres" });
  adminClient.on("error", () => {}); // the server going away during stop() is expected
  let adminConnected: Promise<void> | undefined;

  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> =>
    (stopping ??= (async () => {
      if (adminConnected) await adminConnected.then(() => adminClient.end()).catch(() => {});
      await postmaster.stop(); // fast shutdown: disconnect clients, then exit cleanly
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
    logText: async () => postmaster.log(),
    stop,
  };
  return server;
}
