import { fileURLToPath } from "node:url";
import { sockDiagAvailable } from "@rdsd/sock-diag";
import { pgbenchSelect, type Endpoint, type PgbenchRun } from "../pgbench.js";
import { sampleProcess, startProcess, waitForOutput, type RunningProcess } from "../proc.js";
import { median, ratio } from "../stats.js";
import { awaitFewTimeWait, tcpTableSize, type TcpTableSize } from "../tcp-table.js";
import { PATHS, type BenchContext, type PathName, type ResultRow } from "../model.js";
import { medianOf, proxySample } from "./relay.js";

const CONNECT_GOAL = 1.3;
const CONNECT_WARMUP_SECONDS = 2;
const NODE_FLOOR_SERVER = fileURLToPath(new URL("../node-floor-server.js", import.meta.url));

/**
 * `pgbench -S -C`: a new connection for every transaction, one client. rdsd's cost per connection is a local
 * accept, the local-user check (the kernel's exact sock_diag lookup, or without the addon a scan of
 * /proc/net/tcp, which grows with every TIME_WAIT socket on the machine), its own greeting on a parked server
 * connection, the relayed query, and after the client's Terminate the server connection's reset (DISCARD ALL);
 * pgbouncer in session mode does the same in C. rdsd is also measured on a target with allowOtherUsers: true,
 * which skips the check, to show its share, and the Node floor (node-floor-server.ts: canned answers, no
 * upstream) shows what Node alone costs per connection.
 */
export async function measureConnect(ctx: BenchContext): Promise<ResultRow[]> {
  const runs: Record<PathName, PgbenchRun[]> = { direct: [], rdsd: [], pgbouncer: [] };
  const cpuPerConnection: Record<PathName, number[]> = { direct: [], rdsd: [], pgbouncer: [] };
  const unchecked: PgbenchRun[] = [];
  const uncheckedCpu: number[] = [];
  const tables: { start: TcpTableSize; end: TcpTableSize }[] = [];
  const uncheckedEndpoint: Endpoint = { ...ctx.endpoints.rdsd, label: "rdsd (allowOtherUsers)", port: ctx.rdsd.ports.at(-1)! };
  const floor = await startNodeFloor();
  const floorEndpoint: Endpoint = { ...ctx.endpoints.rdsd, label: "Node floor", port: floor.port };
  const floorRuns: PgbenchRun[] = [];
  const floorCpu: number[] = [];
  const cpuSeconds = async (path: PathName | "floor"): Promise<number | undefined> =>
    path === "floor" ? (await sampleProcess(floor.process.pid)).cpuSeconds : proxySample(ctx, path);
  const measure = async (path: PathName | "floor", endpoint: Endpoint, cpu: number[]): Promise<PgbenchRun> => {
    // Each run starts once earlier bursts' TIME_WAIT sockets are (nearly) gone: the same table for every path.
    await awaitFewTimeWait(ctx.plan.timeWaitSettleMs);
    await ctx.quiet();
    const start = await tcpTableSize();
    const before = await cpuSeconds(path);
    const run = await pgbenchSelect(endpoint, ctx.binDir, { clients: 1, seconds: ctx.plan.connectSeconds, mode: "simple", connectPerTransaction: true });
    const after = await cpuSeconds(path);
    if (endpoint === ctx.endpoints.rdsd) tables.push({ start, end: await tcpTableSize() });
    if (before !== undefined && after !== undefined) cpu.push(((after - before) * 1000) / run.transactions);
    ctx.log(`  connect ${endpoint.label}: ${(1000 / run.tps).toFixed(2)} ms per connection+transaction (${start.rows} TCP sockets listed at start)`);
    return run;
  };
  // A daemon runs all day: its per-connection code is measured compiled (V8 optimizes it after a few thousand
  // connections) and each target's pool holds its first server connection, as after a user's first connect.
  try {
    for (const endpoint of [ctx.endpoints.rdsd, uncheckedEndpoint, ctx.endpoints.pgbouncer, floorEndpoint]) {
      await pgbenchSelect(endpoint, ctx.binDir, { clients: 1, seconds: CONNECT_WARMUP_SECONDS, mode: "simple", connectPerTransaction: true });
    }
    for (let rep = 0; rep < ctx.plan.repetitions; rep++) {
      for (const path of PATHS) runs[path].push(await measure(path, ctx.endpoints[path], cpuPerConnection[path]));
      unchecked.push(await measure("rdsd", uncheckedEndpoint, uncheckedCpu));
      floorRuns.push(await measure("floor", floorEndpoint, floorCpu));
    }
  } finally {
    await floor.process.stop();
  }
  const perTransactionMs = medianOf(runs, (r) => 1000 / r.tps);
  const connectionMs = medianOf(runs, (r) => r.connectionMs ?? NaN);
  const slowdown = ratio(perTransactionMs.rdsd, perTransactionMs.direct);
  const cpuMs = medianOf({ ...cpuPerConnection, direct: [] }, (v) => v);
  const atOrBelowPgbouncer = (values: Partial<Record<PathName, number>>) => values.rdsd! <= values.pgbouncer!;
  const uncheckedMs = median(unchecked.map((r) => 1000 / r.tps));
  const startRows = median(tables.map((t) => t.start.rows));
  const endRows = median(tables.map((t) => t.end.rows));
  const endTimeWait = median(tables.map((t) => t.end.timeWait));
  // The daemon runs from this checkout on this machine: the addon it loads is the one this process finds.
  const sockDiag = sockDiagAvailable();
  const lookup = sockDiag.ok
    ? "its local-user check asks the kernel for the client's socket (sock_diag)"
    : `its local-user check scans /proc/net/tcp up to the client's row (sock_diag unavailable: ${sockDiag.reason})`;
  return [
    {
      section: "connect",
      measure: "pgbench -S -C, 1 client: wall per connection + transaction",
      unit: "ms",
      values: perTransactionMs,
      better: "lower",
      goal: `<= ${CONNECT_GOAL}x direct, <= pgbouncer`,
      met: slowdown <= CONNECT_GOAL && atOrBelowPgbouncer(perTransactionMs),
      note:
        `rdsd takes ${slowdown.toFixed(2)}x direct's time per connection; ${lookup}; ` +
        `the TCP table grew from ${startRows.toFixed(0)} to ${endRows.toFixed(0)} rows (${endTimeWait.toFixed(0)} TIME_WAIT) during rdsd's run`,
    },
    { section: "connect", measure: "pgbench -S -C, 1 client: connection time as pgbench reports it", unit: "ms", values: connectionMs, better: "lower" },
    {
      section: "connect",
      measure: "pgbench -S -C, 1 client: wall per connection + transaction, local-user check off (allowOtherUsers)",
      unit: "ms",
      values: { direct: perTransactionMs.direct, rdsd: uncheckedMs },
      better: "lower",
      note: "the same daemon on a target with allowOtherUsers: true (direct repeated from the row above): what the local-user check costs",
    },
    {
      section: "connect",
      measure: "pgbench -S -C, 1 client: wall per connection + transaction, Node floor (canned answers, no upstream)",
      unit: "ms",
      values: { direct: perTransactionMs.direct, rdsd: median(floorRuns.map((r) => 1000 / r.tps)), pgbouncer: perTransactionMs.pgbouncer },
      better: "lower",
      note: "in the rdsd column: a bare Node server (bench/src/node-floor-server.ts) that answers the startup and the query with canned bytes and has no upstream, no TLS and no logging: the least any Node proxy costs per connection",
    },
    { section: "cpu", measure: "proxy CPU per connection (pgbench -C)", unit: "ms", values: cpuMs, better: "lower", goal: "<= pgbouncer", met: atOrBelowPgbouncer(cpuMs) },
    { section: "cpu", measure: "proxy CPU per connection (pgbench -C), local-user check off", unit: "ms", values: { rdsd: median(uncheckedCpu) }, better: "lower" },
    {
      section: "cpu",
      measure: "proxy CPU per connection (pgbench -C), Node floor (canned answers, no upstream)",
      unit: "ms",
      values: { rdsd: median(floorCpu), pgbouncer: cpuMs.pgbouncer },
      better: "lower",
      note: "in the rdsd column: the bare Node server of the row above; pgbouncer's figure (with its upstream, reset and logging) repeated for the ratio",
    },
  ];
}

/** The Node floor server as its own process (its CPU is sampled like the daemon's). */
async function startNodeFloor(): Promise<{ port: number; process: RunningProcess }> {
  const proc = startProcess(process.execPath, [NODE_FLOOR_SERVER]);
  try {
    await waitForOutput(proc, (out) => /listening on port \d+/.test(out), "Node floor server", 10_000);
  } catch (err) {
    await proc.stop();
    throw err;
  }
  return { port: Number(/listening on port (\d+)/.exec(proc.output())![1]), process: proc };
}
