import { setTimeout as sleep } from "node:timers/promises";
import pg from "pg";
import { runCommand } from "@rdsd/testkit";
import { RDSD_BIN } from "../paths.js";
import { BENCH_DATABASE, BENCH_USER } from "../servers.js";
import { median } from "../stats.js";
import type { BenchContext, ResultRow } from "../model.js";

const IDLE_RSS_GOAL_MB = 100;
const CLIENTS_RSS_GOAL_MB = 100;
const STATUS_GOAL_MS = 150;
const CONNECT_CONCURRENCY = 16;
/** Lets the daemon's allocations settle before reading RSS. */
const SETTLE_MS = 1_000;

/** RSS of the freshly started daemon serving `targets` targets, before any client. */
export async function measureIdleRss(ctx: BenchContext, targets: number): Promise<ResultRow> {
  await sleep(SETTLE_MS);
  const mb = (await ctx.rdsd.sample()).rssBytes / 1e6;
  return { section: "footprint", measure: `daemon RSS idle, ${targets} targets`, unit: "MB", values: { rdsd: mb }, better: "lower", goal: `< ${IDLE_RSS_GOAL_MB} MB`, met: mb < IDLE_RSS_GOAL_MB };
}

/** Opens `count` logged-in client connections spread over the targets, reads RSS, closes them. */
export async function measureIdleClients(ctx: BenchContext): Promise<ResultRow> {
  const count = ctx.plan.idleClients;
  const before = (await ctx.rdsd.sample()).rssBytes / 1e6;
  const clients: pg.Client[] = [];
  try {
    let next = 0;
    const worker = async () => {
      while (next < count) {
        const port = ctx.rdsd.ports[next++ % ctx.rdsd.ports.length]!;
        const client = new pg.Client({ host: "127.0.0.1", port, user: BENCH_USER, database: BENCH_DATABASE, ssl: false });
        client.on("error", () => {});
        clients.push(client);
        await client.connect();
      }
    };
    await Promise.all(Array.from({ length: CONNECT_CONCURRENCY }, worker));
    await sleep(SETTLE_MS);
    const after = (await ctx.rdsd.sample()).rssBytes / 1e6;
    const added = after - before;
    ctx.log(`  ${count} idle clients: RSS ${before.toFixed(0)} -> ${after.toFixed(0)} MB`);
    return {
      section: "footprint",
      measure: `daemon RSS added by ${count} idle logged-in clients`,
      unit: "MB",
      values: { rdsd: added },
      better: "lower",
      goal: `< ${CLIENTS_RSS_GOAL_MB} MB`,
      met: added < CLIENTS_RSS_GOAL_MB,
      note: `RSS ${before.toFixed(0)} MB before, ${after.toFixed(0)} MB with the clients (${((added * 1e3) / count).toFixed(0)} kB per client and upstream TLS connection)`,
    };
  } finally {
    await Promise.all(clients.map((c) => c.end().catch(() => {})));
  }
}

/** Wall time of `rdsd status` against the running daemon, median of several runs; skipped if the command does not exist. */
export async function measureStatus(ctx: BenchContext): Promise<ResultRow> {
  const row: ResultRow = { section: "footprint", measure: "`rdsd status` wall time", unit: "ms", values: {}, better: "lower", goal: `< ${STATUS_GOAL_MS} ms` };
  const env = { ...process.env, ...ctx.rdsd.env };
  const probe = await runCommand(process.execPath, [RDSD_BIN, "status", "--help"], { env });
  if (probe.code !== 0) return { ...row, note: "not measured: this build has no `rdsd status` command yet" };
  const times: number[] = [];
  let lastError = "";
  for (let i = 0; i < ctx.plan.statusRuns; i++) {
    const started = process.hrtime.bigint();
    const r = await runCommand(process.execPath, [RDSD_BIN, "status"], { env, timeoutMs: 10_000 });
    const ms = Number(process.hrtime.bigint() - started) / 1e6;
    if (r.code === 0) times.push(ms);
    else lastError = `exit ${r.code}: ${(r.stderr || r.stdout).trim().split("\n")[0] ?? ""}`;
  }
  if (times.length === 0) return { ...row, note: `not measured: \`rdsd status\` failed (${lastError})` };
  const ms = median(times);
  // What no command can go under on this runtime: Node starting and exiting with nothing to do.
  const bare: number[] = [];
  for (let i = 0; i < ctx.plan.statusRuns; i++) {
    const started = process.hrtime.bigint();
    await runCommand(process.execPath, ["-e", "0"], { env, timeoutMs: 10_000 });
    bare.push(Number(process.hrtime.bigint() - started) / 1e6);
  }
  return { ...row, values: { rdsd: ms }, met: ms < STATUS_GOAL_MS, note: `median of ${times.length} runs, node start-up included; \`node -e 0\` alone takes ${median(bare).toFixed(0)} ms on this Node (${process.version})` };
}
