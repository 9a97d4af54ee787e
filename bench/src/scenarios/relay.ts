import { mkdtemp, rm } from "node:fs/promises";
import { join } from "node:path";
import { sampleProcess } from "../proc.js";
import { latencyPercentilesUs, pgbenchSelect, type PgbenchRun } from "../pgbench.js";
import { median, ratio } from "../stats.js";
import { PATHS, type BenchContext, type PathName, type ResultRow } from "../model.js";

/** Goals from product.md: rdsd/direct TPS at least this at each client count. */
const TPS_GOAL: Record<number, number> = { 1: 0.9, 16: 0.8 };
const ADDED_P50_GOAL_US = 20;

/**
 * `pgbench -S` through the three paths, at 1, 16 and 64 clients, simple and prepared protocol. Paths run in
 * turn inside each repetition so that drift (other load, caches) spreads evenly; each figure is the median.
 * At 1 client every transaction's latency is logged, for p50/p99.
 */
export async function measureRelay(ctx: BenchContext): Promise<ResultRow[]> {
  const rows: ResultRow[] = [];
  const logRoot = await mkdtemp(join(ctx.workDir, "txlog-"));
  try {
    for (const path of PATHS) await pgbenchSelect(ctx.endpoints[path], ctx.binDir, { clients: 4, seconds: 2, mode: "simple" }); // warm-up
    for (const mode of ctx.plan.relayModes) {
      for (const clients of ctx.plan.relayClients) {
        const runs: Record<PathName, PgbenchRun[]> = { direct: [], rdsd: [], pgbouncer: [] };
        const proxyCpu: Record<PathName, number[]> = { direct: [], rdsd: [], pgbouncer: [] };
        // CPU per transaction holds up on a busy machine, where TPS does not: the proxies' cost, side by side.
        const cpuPerTransactionUs: Record<PathName, number[]> = { direct: [], rdsd: [], pgbouncer: [] };
        for (let rep = 0; rep < ctx.plan.repetitions; rep++) {
          for (const path of PATHS) {
            await ctx.quiet();
            const before = await proxySample(ctx, path);
            const run = await pgbenchSelect(ctx.endpoints[path], ctx.binDir, {
              clients,
              seconds: ctx.plan.relaySeconds,
              mode,
              ...(clients === 1 ? { logDir: logRoot } : {}),
            });
            const after = await proxySample(ctx, path);
            runs[path].push(run);
            if (before !== undefined && after !== undefined) {
              proxyCpu[path].push(((after - before) / ctx.plan.relaySeconds) * 100);
              cpuPerTransactionUs[path].push(((after - before) * 1e6) / run.transactions);
            }
            ctx.log(`  relay ${mode} c=${clients} ${path}: ${run.tps.toFixed(0)} tps`);
          }
        }
        const tps = medianOf(runs, (r) => r.tps);
        const goal = TPS_GOAL[clients];
        const vsDirect = ratio(tps.rdsd, tps.direct);
        const vsBouncer = ratio(tps.rdsd, tps.pgbouncer);
        rows.push({
          section: "relay",
          measure: `pgbench -S ${mode}, ${clients} client${clients > 1 ? "s" : ""}`,
          unit: "TPS",
          values: tps,
          better: "higher",
          ...(goal !== undefined
            ? { goal: `>= ${goal * 100}% of direct, >= pgbouncer`, met: vsDirect >= goal && vsBouncer >= 1 }
            : { goal: ">= pgbouncer", met: vsBouncer >= 1 }),
          note: `proxy CPU: rdsd ${fmtPct(median(proxyCpu.rdsd))}, pgbouncer ${fmtPct(median(proxyCpu.pgbouncer))} of one core`,
        });
        rows.push({
          section: "cpu",
          measure: `proxy CPU per transaction, pgbench -S ${mode}, ${clients} client${clients > 1 ? "s" : ""}`,
          unit: "us",
          values: medianOf({ ...cpuPerTransactionUs, direct: [] }, (v) => v),
          better: "lower",
        });
        if (clients === 1) {
          const pct = (p: "p50" | "p99") => medianOf(runs, (r) => latencyPercentilesUs(r.latenciesUs ?? [])[p]);
          const p50 = pct("p50");
          const p99 = pct("p99");
          const addedP50 = (p50.rdsd ?? NaN) - (p50.direct ?? NaN);
          rows.push({
            section: "relay",
            measure: `latency p50, ${mode}, 1 client`,
            unit: "us",
            values: p50,
            better: "lower",
            goal: `added p50 < ${ADDED_P50_GOAL_US} us`,
            met: addedP50 < ADDED_P50_GOAL_US,
            note: `rdsd adds ${addedP50.toFixed(1)} us per round trip at p50 (pgbouncer ${((p50.pgbouncer ?? NaN) - (p50.direct ?? NaN)).toFixed(1)} us)`,
          });
          rows.push({ section: "relay", measure: `latency p99, ${mode}, 1 client`, unit: "us", values: p99, better: "lower" });
        }
      }
    }
  } finally {
    await rm(logRoot, { recursive: true, force: true });
  }
  return rows;
}

/** CPU seconds used so far by the proxy process of a path (none for direct). */
export async function proxySample(ctx: BenchContext, path: PathName): Promise<number | undefined> {
  if (path === "rdsd") return (await ctx.rdsd.sample()).cpuSeconds;
  if (path === "pgbouncer") return (await sampleProcess(ctx.pgbouncer.process.pid)).cpuSeconds;
  return undefined;
}

export function medianOf<T>(runs: Record<PathName, T[]>, pick: (run: T) => number): Partial<Record<PathName, number>> {
  const out: Partial<Record<PathName, number>> = {};
  for (const path of PATHS) if (runs[path].length > 0) out[path] = median(runs[path].map(pick));
  return out;
}

function fmtPct(v: number): string {
  return Number.isFinite(v) ? `${v.toFixed(0)}%` : "-";
}
