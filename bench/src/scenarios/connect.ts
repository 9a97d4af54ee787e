import { pgbenchSelect, type PgbenchRun } from "../pgbench.js";
import { ratio } from "../stats.js";
import { PATHS, type BenchContext, type PathName, type ResultRow } from "../model.js";
import { medianOf, proxySample } from "./relay.js";

const CONNECT_GOAL = 1.3;

/**
 * `pgbench -S -C`: a new connection for every transaction, one client. rdsd's cost per connection is a local
 * accept plus a full upstream TLS handshake and login (the password, like a cached IAM token, needs no
 * signing); pgbouncer in session mode hands out an already open server connection.
 */
export async function measureConnect(ctx: BenchContext): Promise<ResultRow[]> {
  const runs: Record<PathName, PgbenchRun[]> = { direct: [], rdsd: [], pgbouncer: [] };
  const cpuPerConnection: Record<PathName, number[]> = { direct: [], rdsd: [], pgbouncer: [] };
  for (let rep = 0; rep < ctx.plan.repetitions; rep++) {
    for (const path of PATHS) {
      await ctx.quiet();
      const before = await proxySample(ctx, path);
      const run = await pgbenchSelect(ctx.endpoints[path], ctx.binDir, { clients: 1, seconds: ctx.plan.connectSeconds, mode: "simple", connectPerTransaction: true });
      const after = await proxySample(ctx, path);
      runs[path].push(run);
      if (before !== undefined && after !== undefined) cpuPerConnection[path].push(((after - before) * 1000) / run.transactions);
      ctx.log(`  connect ${path}: ${(1000 / run.tps).toFixed(2)} ms per connection+transaction`);
    }
  }
  const perTransactionMs = medianOf(runs, (r) => 1000 / r.tps);
  const connectionMs = medianOf(runs, (r) => r.connectionMs ?? NaN);
  const slowdown = ratio(perTransactionMs.rdsd, perTransactionMs.direct);
  return [
    {
      section: "connect",
      measure: "pgbench -S -C, 1 client: wall per connection + transaction",
      unit: "ms",
      values: perTransactionMs,
      better: "lower",
      goal: `<= ${CONNECT_GOAL}x direct`,
      met: slowdown <= CONNECT_GOAL,
      note: `rdsd takes ${slowdown.toFixed(2)}x direct's time per connection`,
    },
    { section: "connect", measure: "pgbench -S -C, 1 client: connection time as pgbench reports it", unit: "ms", values: connectionMs, better: "lower" },
    { section: "cpu", measure: "proxy CPU per connection (pgbench -C)", unit: "ms", values: medianOf({ ...cpuPerConnection, direct: [] }, (v) => v), better: "lower" },
  ];
}
