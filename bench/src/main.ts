/**
 * `npm run bench` (short) / `npm run bench:long`: sets up PostgreSQL with TLS, pgbouncer and the rdsd daemon,
 * measures, prints one table of figures and ratios, and writes bench/results/<date>-<mode>.{md,json}.
 * Options: --long, --only=footprint,relay,connect,bulk,tunnels, --clients=1,16,64, --modes=simple,prepared,
 * --readme (put the table in README.md),
 * --cpu-prof=DIR (profile the daemon; the .cpuprofile lands in DIR when it stops).
 */
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { findPostgres, tempDir } from "@rdsd/testkit";
import { describeMachine } from "./machine.js";
import { PLANS, type BenchContext, type ResultRow, type RunMode } from "./model.js";
import { ensureDebianPackages } from "./packages.js";
import { awaitQuietMachine } from "./quiet.js";
import { README, RESULTS_DIR } from "./paths.js";
import { renderMarkdown, renderNotes, renderTable, type BenchReport } from "./report.js";
import { BENCH_DATABASE, BENCH_USER, makeBenchTls, postgresOsUser, startBenchDatabase, startPgbouncer, startRdsd } from "./servers.js";
import { measureBulk } from "./scenarios/bulk.js";
import { measureConnect } from "./scenarios/connect.js";
import { measureConnectLatency } from "./scenarios/connect-latency.js";
import { measureIdleClients, measureIdleRss, measureStatus } from "./scenarios/footprint.js";
import { measureIdleTunnels } from "./scenarios/idle.js";
import { measureRelay } from "./scenarios/relay.js";
import { measureTunnels } from "./scenarios/tunnels.js";
import { median } from "./stats.js";

const SECTIONS = ["footprint", "relay", "connect", "bulk", "tunnels"] as const;
type Section = (typeof SECTIONS)[number];
const FOOTPRINT_TARGETS = 10;
const README_BEGIN = "<!-- bench:begin -->";
const README_END = "<!-- bench:end -->";

interface Args {
  mode: RunMode;
  only: Set<Section>;
  readme: boolean;
  cpuProfileDir?: string;
  relayClients?: number[];
  relayModes?: Array<"simple" | "prepared">;
}

function parseArgs(argv: string[]): Args {
  const args: Args = { mode: "short", only: new Set(SECTIONS), readme: false };
  for (const arg of argv) {
    if (arg === "--long") args.mode = "long";
    else if (arg === "--short") args.mode = "short";
    else if (arg === "--readme") args.readme = true;
    else if (arg.startsWith("--cpu-prof=")) args.cpuProfileDir = arg.slice("--cpu-prof=".length);
    else if (arg.startsWith("--clients=")) args.relayClients = arg.slice("--clients=".length).split(",").map(positiveInteger);
    else if (arg.startsWith("--modes=")) {
      const modes = arg.slice("--modes=".length).split(",");
      if (modes.some((m) => m !== "simple" && m !== "prepared")) usage("--modes takes simple,prepared");
      args.relayModes = modes as Array<"simple" | "prepared">;
    } else if (arg.startsWith("--only=")) {
      const wanted = arg.slice("--only=".length).split(",");
      const unknown = wanted.filter((s) => !(SECTIONS as readonly string[]).includes(s));
      if (unknown.length > 0) usage(`unknown section ${unknown.join(", ")}; sections: ${SECTIONS.join(", ")}`);
      args.only = new Set(wanted as Section[]);
    } else usage(`unknown option ${arg}`);
  }
  return args;
}

function positiveInteger(text: string): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1 || n > 1000) usage(`not a client count: ${text}`);
  return n;
}

function usage(message: string): never {
  console.error(`bench: ${message}\nusage: node bench/dist/main.js [--short|--long] [--only=${SECTIONS.join(",")}] [--readme] [--cpu-prof=DIR] [--clients=1,16,64] [--modes=simple,prepared]`);
  process.exit(2);
}

const log = (line: string) => console.error(line);

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const plan = { ...PLANS[args.mode] };
  if (args.relayClients) plan.relayClients = args.relayClients;
  if (args.relayModes) plan.relayModes = args.relayModes;
  const started = new Date();
  const installed = await ensureDebianPackages(log);
  if (installed.length > 0) log(`installed ${installed.join(" ")}`);
  const { binDir } = findPostgres();
  const machine = await describeMachine(binDir);
  log(`rdsd bench (${plan.mode}) on ${machine.cpuModel}, ${machine.cores} cores; load ${machine.loadAverage.join(" ")}`);

  const work = await tempDir("rdsd-bench-");
  const stops: Array<() => Promise<void>> = [work.cleanup];
  const rows: ResultRow[] = [];
  let caCertificates = 0;
  const background: number[] = [];
  try {
    const tls = await makeBenchTls(work.path);
    caCertificates = tls.caCertificates;
    log("starting PostgreSQL and loading pgbench data...");
    const db = await startBenchDatabase(tls, plan.pgbenchScale, plan.idleClients + 200);
    stops.unshift(() => db.server.stop());
    const pgbouncer = await startPgbouncer(work.path, db, tls, await postgresOsUser());
    stops.unshift(() => pgbouncer.stop());
    const rdsd = await startRdsd(work.path, db, tls, FOOTPRINT_TARGETS, args.cpuProfileDir ? { cpuProfileDir: args.cpuProfileDir } : {});
    stops.unshift(() => rdsd.stop());
    const common = { user: BENCH_USER, database: BENCH_DATABASE, host: "127.0.0.1" } as const;
    const ctx: BenchContext = {
      plan,
      binDir,
      workDir: work.path,
      caPath: tls.caPath,
      db,
      rdsd,
      pgbouncer,
      log,
      quiet: async () => {
        background.push(await awaitQuietMachine(plan.quietWaitMs));
      },
      endpoints: {
        direct: { ...common, label: "direct TLS", port: db.server.port, sslmode: "require", password: db.password },
        rdsd: { ...common, label: "rdsd", port: rdsd.ports[0]!, sslmode: "disable" },
        pgbouncer: { ...common, label: "pgbouncer", port: pgbouncer.port, sslmode: "disable" },
      },
    };

    if (args.only.has("footprint")) {
      log("footprint...");
      rows.push(await measureIdleRss(ctx, FOOTPRINT_TARGETS));
      rows.push(await measureStatus(ctx));
      rows.push(await measureIdleClients(ctx));
      rows.push(...(await measureIdleTunnels(ctx, FOOTPRINT_TARGETS)));
    }
    if (args.only.has("relay")) {
      log("relay (pgbench -S)...");
      rows.push(...(await measureRelay(ctx)));
    }
    if (args.only.has("connect")) {
      log("connection setup (pgbench -C)...");
      rows.push(...(await measureConnect(ctx)));
      log("connect round trips through a 25 ms delay...");
      rows.push(...(await measureConnectLatency(ctx)));
    }
    if (args.only.has("bulk")) {
      log("bulk COPY...");
      rows.push(...(await measureBulk(ctx)));
    }
    if (args.only.has("tunnels")) rows.push(...(await measureTunnels(ctx)));
  } finally {
    for (const stop of stops) await stop().catch((err: unknown) => log(`cleanup: ${String(err)}`));
  }

  const report: BenchReport = { startedAt: started.toISOString(), durationSeconds: (Date.now() - started.getTime()) / 1000, plan, machine, rows, background: summarizeBackground(background), caCertificates };
  const stem = `${started.toISOString().slice(0, 16).replace(":", "")}-${plan.mode}`;
  await mkdir(RESULTS_DIR, { recursive: true });
  const markdown = renderMarkdown(report);
  await writeFile(join(RESULTS_DIR, `${stem}.md`), markdown);
  await writeFile(join(RESULTS_DIR, `${stem}.json`), JSON.stringify(report, null, 2) + "\n");
  if (args.readme) await updateReadme(markdown);
  console.log(renderTable(rows));
  console.log();
  console.log(renderNotes(rows));
  log(`\nwritten: bench/results/${stem}.md and .json${args.readme ? "; README.md updated" : ""}`);
}

/** How busy the machine still was (other work) just before the measurements. */
function summarizeBackground(samples: number[]): BenchReport["background"] {
  return { median: median(samples), max: samples.length > 0 ? Math.max(...samples) : Number.NaN, samples: samples.length };
}

/** Replaces the text between the bench markers in README.md with the latest results. */
async function updateReadme(markdown: string): Promise<void> {
  const text = await readFile(README, "utf8");
  const begin = text.indexOf(README_BEGIN);
  const end = text.indexOf(README_END);
  if (begin < 0 || end < begin) throw new Error(`README.md has no ${README_BEGIN} ... ${README_END} section`);
  const body = markdown.replace(/^# .*\n/, "").trim();
  await writeFile(README, `${text.slice(0, begin + README_BEGIN.length)}\n${body}\n${text.slice(end)}`);
}

process.once("SIGINT", () => process.exit(130));
// Exit explicitly: a client library's lingering handle must not keep a finished run alive.
main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(`bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    process.exit(1);
  },
);
