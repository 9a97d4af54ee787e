import { rm, stat } from "node:fs/promises";
import { join } from "node:path";
import { runPsql } from "../pgbench.js";
import { BULK_ROW_TEXT_BYTES } from "../servers.js";
import { ratio } from "../stats.js";
import { PATHS, type BenchContext, type PathName, type ResultRow } from "../model.js";
import { medianOf, proxySample } from "./relay.js";

const BULK_GOAL = 0.9;

interface BulkRun {
  mbPerSecond: number;
  /** Proxy CPU milliseconds per MB moved; NaN for direct. */
  cpuMsPerMb: number;
}

/**
 * About 1 GB each way through each path with psql: `COPY (SELECT ...) TO STDOUT` into a file (direct, first run,
 * which becomes the input) or /dev/null, then `COPY ... FROM STDIN` of that file into an unlogged table.
 */
export async function measureBulk(ctx: BenchContext): Promise<ResultRow[]> {
  const dataFile = join(ctx.workDir, "bulk.copy");
  const query = `COPY (SELECT g, repeat('x', ${BULK_ROW_TEXT_BYTES}) FROM generate_series(1, ${ctx.plan.bulkRows}) g) TO STDOUT`;
  try {
    await runPsql(ctx.binDir, ctx.endpoints.direct, query, { stdoutFile: dataFile });
    const bytes = (await stat(dataFile)).size;
    const mb = bytes / 1e6;
    ctx.log(`  bulk data: ${mb.toFixed(0)} MB`);
    const copyOut: Record<PathName, BulkRun[]> = { direct: [], rdsd: [], pgbouncer: [] };
    const copyIn: Record<PathName, BulkRun[]> = { direct: [], rdsd: [], pgbouncer: [] };
    for (let rep = 0; rep < ctx.plan.bulkRepetitions; rep++) {
      for (const path of PATHS) {
        copyOut[path].push(await timed(ctx, path, mb, () => runPsql(ctx.binDir, ctx.endpoints[path], query, { stdoutFile: "/dev/null" })));
        ctx.log(`  COPY TO ${path}: ${copyOut[path].at(-1)!.mbPerSecond.toFixed(0)} MB/s`);
      }
      for (const path of PATHS) {
        await ctx.db.psqlAdmin("TRUNCATE bulk_in");
        copyIn[path].push(await timed(ctx, path, mb, () => runPsql(ctx.binDir, ctx.endpoints[path], "COPY bulk_in FROM STDIN", { stdinFile: dataFile })));
        ctx.log(`  COPY FROM ${path}: ${copyIn[path].at(-1)!.mbPerSecond.toFixed(0)} MB/s`);
      }
    }
    const outRate = medianOf(copyOut, (r) => r.mbPerSecond);
    const inRate = medianOf(copyIn, (r) => r.mbPerSecond);
    const outRatio = ratio(outRate.rdsd, outRate.direct);
    return [
      {
        section: "bulk",
        measure: `COPY (SELECT ...) TO STDOUT, ${mb.toFixed(0)} MB`,
        unit: "MB/s",
        values: outRate,
        better: "higher",
        goal: `>= ${BULK_GOAL * 100}% of direct`,
        met: outRatio >= BULK_GOAL,
      },
      { section: "bulk", measure: `COPY ... FROM STDIN, ${mb.toFixed(0)} MB`, unit: "MB/s", values: inRate, better: "higher" },
      { section: "cpu", measure: "proxy CPU per MB, COPY TO STDOUT", unit: "ms/MB", values: withoutDirect(medianOf(copyOut, (r) => r.cpuMsPerMb)), better: "lower" },
      { section: "cpu", measure: "proxy CPU per MB, COPY FROM STDIN", unit: "ms/MB", values: withoutDirect(medianOf(copyIn, (r) => r.cpuMsPerMb)), better: "lower" },
    ];
  } finally {
    await rm(dataFile, { force: true });
  }
}

async function timed(ctx: BenchContext, path: PathName, mb: number, run: () => Promise<void>): Promise<BulkRun> {
  await ctx.quiet();
  const before = await proxySample(ctx, path);
  const started = process.hrtime.bigint();
  await run();
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  const after = await proxySample(ctx, path);
  const cpuMsPerMb = before !== undefined && after !== undefined ? ((after - before) * 1000) / mb : Number.NaN;
  return { mbPerSecond: mb / seconds, cpuMsPerMb };
}

function withoutDirect(values: Partial<Record<PathName, number>>): Partial<Record<PathName, number>> {
  const { direct: _direct, ...rest } = values;
  return rest;
}
