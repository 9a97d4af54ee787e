import { spawn } from "node:child_process";
import type { DaemonStatus, TargetStatus } from "@rdsd/control";
import { ask } from "../daemon-client.js";
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

/**
 * How to reach a target on this machine, as a libpq URL: the first IPv4 listener (else IPv6), or the Unix
 * socket when asked for (or when the target has only that).
 */
export function connectionInfo(status: DaemonStatus, target: TargetStatus, tls: boolean, socket = false): ConnectionInfo {
  if (socket || (target.listen.length === 0 && target.socket !== null)) return socketInfo(status, target, tls);
  const address = target.listen.find((a) => !a.startsWith("[")) ?? target.listen[0];
  if (!address) throw new CliError(`target ${target.name} is not listening`, "see `rdsd status` for its error");
  const colon = address.lastIndexOf(":");
  const host = address.slice(0, colon).replace(/^\[|\]$/g, "");
  const port = Number(address.slice(colon + 1));
  const hostInUrl = host.includes(":") ? `[${host}]` : host;
  const params = tls ? `?sslmode=verify-full&sslrootcert=${encodeURIComponent(status.localCaPath)}` : "";
  const db = target.database ? `/${encodeURIComponent(target.database)}` : "";
  return { url: `postgresql://${encodeURIComponent(target.user)}@${hostInUrl}:${port}${db}${params}`, host, port, user: target.user, database: target.database, sslrootcert: status.localCaPath, readOnly: target.readOnly, profile: target.profile, region: target.region };
}

/** libpq's form for a socket: the directory as `host` and the number in `.s.PGSQL.<port>` as `port`. */
function socketInfo(status: DaemonStatus, target: TargetStatus, tls: boolean): ConnectionInfo {
  if (target.socket === null) throw new CliError(`target ${target.name} has no Unix socket`, "set socket: true on it in the rdsd config, then `rdsd reload`");
  if (tls) throw new CliError("--tls does not apply to a Unix socket", "libpq never uses TLS on a Unix socket: leave out --tls, or leave out --socket for a TCP URL");
  const slash = target.socket.lastIndexOf("/");
  const directory = target.socket.slice(0, slash);
  const port = Number(target.socket.slice(target.socket.lastIndexOf(".") + 1));
  const db = target.database ? encodeURIComponent(target.database) : "";
  const url = `postgresql://${encodeURIComponent(target.user)}@/${db}?host=${encodeURIComponent(directory)}&port=${port}`;
  return { url, host: directory, port, user: target.user, database: target.database, sslrootcert: status.localCaPath, readOnly: target.readOnly, profile: target.profile, region: target.region };
}

/** Said on stderr beside a read-only target's URL, so that `$(rdsd url X)` still captures the URL alone. */
export function readOnlyNote(name: string): string {
  return `note: target ${name} is read-only in rdsd's config (readOnly: true): sessions start with default_transaction_read_only = on\n`;
}

async function lookup(name: string, tls: boolean, socket = false): Promise<ConnectionInfo> {
  const status = await ask("status", { target: name });
  return connectionInfo(status, status.targets[0]!, tls, socket);
}

export async function urlCommand(name: string, opts: { json?: boolean; tls?: boolean; socket?: boolean }): Promise<number> {
  const info = await lookup(name, Boolean(opts.tls), Boolean(opts.socket));
  if (!opts.json && info.readOnly) process.stderr.write(readOnlyNote(name));
  process.stdout.write(opts.json ? JSON.stringify(info, null, 2) + "\n" : info.url + "\n");
  return EXIT.ok;
}

/** `rdsd psql TARGET [-- psql args]`: psql on the target's URL; exits with psql's code. */
export async function psqlCommand(name: string, extra: string[]): Promise<number> {
  const info = await lookup(name, false);
  if (info.readOnly) process.stderr.write(readOnlyNote(name));
  const child = spawn(process.env.RDSD_PSQL ?? "psql", [info.url, ...extra], { stdio: "inherit" });
  return new Promise((resolve, reject) => {
    child.once("error", (err: NodeJS.ErrnoException) =>
      reject(err.code === "ENOENT" ? new CliError("psql is not installed", "install the PostgreSQL client (Debian: apt-get install postgresql-client; macOS: brew install libpq), or use `rdsd url`") : err),
    );
    child.once("exit", (code, signal) => resolve(code ?? (signal ? 1 : 0)));
  });
}
