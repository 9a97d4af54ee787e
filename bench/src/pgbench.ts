import { spawn } from "node:child_process";
import { once } from "node:events";
import { open, readdir, readFile, rm } from "node:fs/promises";
import { join } from "node:path";
import { runCommand } from "@rdsd/testkit";
import { quantile } from "./stats.js";

/** How pgbench reaches the server: one of the three paths compared. */
export interface Endpoint {
  label: string;
  host: string;
  port: number;
  user: string;
  database: string;
  sslmode: "require" | "disable";
  password?: string;
}

export interface PgbenchRun {
  tps: number;
  /** pgbench's own average latency, ms. */
  latencyAvgMs: number;
  /** With -C: average connection time, ms. */
  connectionMs?: number;
  transactions: number;
  /** Per-transaction latencies in microseconds, when a log was asked for. */
  latenciesUs?: number[];
}

export interface PgbenchOptions {
  clients: number;
  seconds: number;
  mode: "simple" | "prepared";
  connectPerTransaction?: boolean;
  /** Write per-transaction logs to this directory and return their latencies. */
  logDir?: string;
}

/** libpq environment for one endpoint: nothing inherited, everything explicit. */
export function libpqEnv(endpoint: Endpoint, binDir: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(process.env)) if (!name.startsWith("PG")) env[name] = value;
  return {
    ...env,
    PATH: `${binDir}:${process.env.PATH ?? ""}`,
    PGHOST: endpoint.host,
    PGPORT: String(endpoint.port),
    PGUSER: endpoint.user,
    PGDATABASE: endpoint.database,
    PGSSLMODE: endpoint.sslmode,
    PGPASSWORD: endpoint.password ?? "",
    PGCONNECT_TIMEOUT: "10",
  };
}

/** Runs `pgbench -S` (select-only) against an endpoint and parses its summary. */
export async function pgbenchSelect(endpoint: Endpoint, binDir: string, opts: PgbenchOptions): Promise<PgbenchRun> {
  // One thread per core at most: pgbench shares the two cores with the server and the proxy.
  const threads = Math.min(opts.clients, 2);
  const args = ["-S", "-n", "-c", String(opts.clients), "-j", String(threads), "-T", String(opts.seconds), "-M", opts.mode];
  if (opts.connectPerTransaction) args.push("-C");
  if (opts.logDir) args.push("-l", `--log-prefix=${join(opts.logDir, "txn")}`);
  const result = await runCommand(join(binDir, "pgbench"), args, {
    env: libpqEnv(endpoint, binDir),
    timeoutMs: (opts.seconds + 60) * 1000,
    ...(opts.logDir ? { cwd: opts.logDir } : {}),
  });
  if (result.code !== 0) throw new Error(`pgbench via ${endpoint.label} failed (exit ${result.code}):\n${result.stderr}\n${result.stdout}`);
  const run = parsePgbenchSummary(result.stdout);
  if (opts.logDir) run.latenciesUs = await readTransactionLogs(opts.logDir);
  return run;
}

/** Parses pgbench's closing summary (PostgreSQL 13+ wording). */
export function parsePgbenchSummary(stdout: string): PgbenchRun {
  const number = (re: RegExp): number | undefined => {
    const m = re.exec(stdout);
    return m ? Number(m[1]) : undefined;
  };
  const tps = number(/^tps = ([\d.]+)/m);
  const latency = number(/^latency average = ([\d.]+) ms/m);
  const transactions = number(/^number of transactions actually processed: (\d+)/m);
  if (tps === undefined || latency === undefined || transactions === undefined) throw new Error(`unexpected pgbench output:\n${stdout}`);
  const connection = number(/^average connection time = ([\d.]+) ms/m);
  return { tps, latencyAvgMs: latency, transactions, ...(connection !== undefined ? { connectionMs: connection } : {}) };
}

/** Reads and removes pgbench's per-transaction logs; the third column is the latency in microseconds. */
async function readTransactionLogs(dir: string): Promise<number[]> {
  const latencies: number[] = [];
  for (const name of await readdir(dir)) {
    if (!name.startsWith("txn")) continue;
    const path = join(dir, name);
    for (const line of (await readFile(path, "utf8")).split("\n")) {
      const field = line.split(" ")[2];
      if (field !== undefined) latencies.push(Number(field));
    }
    await rm(path);
  }
  return latencies;
}

export function latencyPercentilesUs(latencies: readonly number[]): { p50: number; p99: number } {
  return { p50: quantile(latencies, 0.5), p99: quantile(latencies, 0.99) };
}

/** psql running one statement, stdin/stdout bound straight to files so the harness never touches the bytes. */
export async function runPsql(binDir: string, endpoint: Endpoint, sql: string, io: { stdoutFile?: string; stdinFile?: string } = {}, timeoutMs = 600_000): Promise<void> {
  const stdin = io.stdinFile ? await open(io.stdinFile, "r") : undefined;
  const stdout = await open(io.stdoutFile ?? "/dev/null", "w");
  try {
    const child = spawn(join(binDir, "psql"), ["-X", "-q", "-v", "ON_ERROR_STOP=1", "-c", sql], {
      env: libpqEnv(endpoint, binDir),
      stdio: [stdin ? stdin.fd : "ignore", stdout.fd, "pipe"],
    });
    let stderr = "";
    child.stderr!.on("data", (c: Buffer) => (stderr += c.toString()));
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    const [code] = (await once(child, "exit")) as [number | null];
    clearTimeout(timer);
    if (code !== 0) throw new Error(`psql via ${endpoint.label} failed (exit ${code}): ${stderr.trim()}`);
  } finally {
    await stdin?.close();
    await stdout.close();
  }
}
