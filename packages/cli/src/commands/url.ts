import { spawn } from "node:child_process";
import { homedir } from "node:os";
import { localCaPath } from "@rdsd/certs";
import { joinHostPort, loadConfig, resolveConfigPath } from "@rdsd/config";
import { stateDir, type TargetStatus } from "@rdsd/control";
import { ask, runningDaemon } from "../daemon-client.js";
import { CliError, EXIT } from "../exit.js";

export interface ConnectionInfo {
  url: string;
  /** An IP address, or the Unix socket's directory (libpq's host for a socket). */
  host: string;
  port: number;
  user: string;
  database: string | null;
  /** The local CA to trust for sslmode=verify-full. */
  sslrootcert: string;
  /** The target is read-only in rdsd's config (sessions start with default_transaction_read_only = on). */
  readOnly: boolean;
  /** The target's AWS profile (null: the SDK's default chain) and SSM region (null when it makes no AWS calls). */
  profile: string | null;
  region: string | null;
}

/** What a connection string needs of a target: from the daemon's status, or from the config. */
type UrlTarget = Pick<TargetStatus, "name" | "listen" | "socket" | "user" | "database" | "readOnly" | "profile" | "region">;

/**
 * How to reach a target on this machine, as a libpq URL: the first IPv4 listener (else IPv6), or the Unix
 * socket when asked for (or when the target has only that).
 */
export function connectionInfo(localCaPath: string, target: UrlTarget, tls: boolean, socket = false): ConnectionInfo {
  if (socket || (target.listen.length === 0 && target.socket !== null)) return socketInfo(localCaPath, target, tls);
  const address = target.listen.find((a) => !a.startsWith("[")) ?? target.listen[0];
  if (!address) throw new CliError(`target ${target.name} is not listening`, "see `rdsd status` for its error");
  const colon = address.lastIndexOf(":");
  const host = address.slice(0, colon).replace(/^\[|\]$/g, "");
  const port = Number(address.slice(colon + 1));
  const hostInUrl = host.includes(":") ? `[${host}]` : host;
  const params = tls ? `?sslmode=verify-full&sslrootcert=${encodeURIComponent(localCaPath)}` : "";
  const db = target.database ? `/${encodeURIComponent(target.database)}` : "";
  return { url: `postgresql://${encodeURIComponent(target.user)}@${hostInUrl}:${port}${db}${params}`, host, port, user: target.user, database: target.database, sslrootcert: localCaPath, readOnly: target.readOnly, profile: target.profile, region: target.region };
}

/** libpq's form for a socket: the directory as `host` and the number in `.s.PGSQL.<port>` as `port`. */
function socketInfo(localCaPath: string, target: UrlTarget, tls: boolean): ConnectionInfo {
  if (target.socket === null) throw new CliError(`target ${target.name} has no Unix socket`, "set socket: true on it in the rdsd config, then `rdsd reload`");
  if (tls) throw new CliError("--tls does not apply to a Unix socket", "libpq never uses TLS on a Unix socket: leave out --tls, or leave out --socket for a TCP URL");
  const slash = target.socket.lastIndexOf("/");
  const directory = target.socket.slice(0, slash);
  const port = Number(target.socket.slice(target.socket.lastIndexOf(".") + 1));
  const db = target.database ? encodeURIComponent(target.database) : "";
  const url = `postgresql://${encodeURIComponent(target.user)}@/${db}?host=${encodeURIComponent(directory)}&port=${port}`;
  return { url, host: directory, port, user: target.user, database: target.database, sslrootcert: localCaPath, readOnly: target.readOnly, profile: target.profile, region: target.region };
}

/** Said on stderr beside a read-only target's URL, so that `$(rdsd url X)` still captures the URL alone. */
export function readOnlyNote(name: string): string {
  return `note: target ${name} is read-only in rdsd's config (readOnly: true): sessions start with default_transaction_read_only = on\n`;
}

/**
 * The running daemon knows the bound addresses, its socket and its CA; with no daemon the config says where
 * the target will listen (the URL is the same once `rdsd start` runs), and the CA is the state dir's.
 */
async function lookup(name: string, tls: boolean, socket: boolean, configFlag: string | undefined): Promise<ConnectionInfo> {
  if (await runningDaemon()) {
    const status = await ask("status", { target: name });
    return connectionInfo(status.localCaPath, status.targets[0]!, tls, socket);
  }
  if (socket) throw new CliError("--socket needs the running daemon: it names the socket", "`rdsd start`, then ask again", EXIT.notRunning);
  const config = await loadConfig(resolveConfigPath({ ...(configFlag ? { flag: configFlag } : {}), env: process.env, home: homedir() }));
  const target = config.targets.find((t) => t.name === name);
  if (!target) {
    throw new CliError(`no target named ${name} in ${config.file} (targets: ${config.targets.map((t) => t.name).join(", ") || "none"})`, "name one of the targets in the config file", EXIT.failure, "unknown-target");
  }
  const listen = target.listen.map((a) => joinHostPort(a.host, a.port));
  // The region as configured: without a daemon nothing resolves a profile's own region.
  const aws = { profile: target.aws.profile ?? null, region: target.aws.region ?? null };
  return connectionInfo(localCaPath(stateDir()), { name, listen, socket: null, user: target.user, database: target.database ?? null, readOnly: target.readOnly === true, ...aws }, tls);
}

export async function urlCommand(name: string, opts: { config?: string; json?: boolean; tls?: boolean; socket?: boolean }): Promise<number> {
  const info = await lookup(name, Boolean(opts.tls), Boolean(opts.socket), opts.config);
  if (!opts.json && info.readOnly) process.stderr.write(readOnlyNote(name));
  process.stdout.write(opts.json ? JSON.stringify(info, null, 2) + "\n" : info.url + "\n");
  return EXIT.ok;
}

/** `rdsd psql TARGET [-- psql args]`: psql on the target's URL; exits with psql's code. */
export async function psqlCommand(name: string, extra: string[], opts: { config?: string } = {}): Promise<number> {
  const info = await lookup(name, false, false, opts.config);
  if (info.readOnly) process.stderr.write(readOnlyNote(name));
  const child = spawn(process.env.RDSD_PSQL ?? "psql", [info.url, ...extra], { stdio: "inherit" });
  return new Promise((resolve, reject) => {
    child.once("error", (err: NodeJS.ErrnoException) =>
      reject(err.code === "ENOENT" ? new CliError("psql is not installed", "install the PostgreSQL client (Debian: apt-get install postgresql-client; macOS: brew install libpq), or use `rdsd url`") : err),
    );
    child.once("exit", (code, signal) => resolve(code ?? (signal ? 1 : 0)));
  });
}
