import { readFile } from "node:fs/promises";
import { join } from "node:path";
import pg from "pg";
import { freePort, runCommand } from "@rdsd/testkit";
import { startDelayRelay } from "../delay-relay.js";
import type { BenchContext, ResultRow } from "../model.js";
import { RDSD_BIN } from "../paths.js";
import { BENCH_DATABASE, BENCH_USER, directDaemonConfig, RDS_HOST, startDaemonProcess, type RdsdDaemon } from "../servers.js";
import { median } from "../stats.js";

/** Each way, between rdsd (or a direct client) and the database. */
const DELAY_MS = 25;
const ROUND_TRIP_MS = 2 * DELAY_MS;
const SAMPLES = 7;
const REPEAT_GOAL = 1.5;
const COLD_GOAL = 3.5;

/**
 * Connect + `select 1` through a network with a 50 ms round trip, in round trips (wall / 50 ms): what a GUI or
 * script pays per connection through an SSM tunnel. Paths: a direct TLS client (SSLRequest, TLS, startup,
 * password, query); rdsd without reuse (`pool: false`: SSLRequest, TLS, then startup with the password in the
 * same write, as the server asked for a cleartext one at an earlier login, plus the query); rdsd cold (no parked
 * connection for these startup parameters, a warm spare with TLS done: startup with the password, query); rdsd
 * repeat (the previous client with the same parameters ended cleanly: its connection is parked and the login is
 * answered locally, only the query travels).
 */
export async function measureConnectLatency(ctx: BenchContext): Promise<ResultRow[]> {
  const relay = await startDelayRelay({ host: "127.0.0.1", port: ctx.db.server.port }, DELAY_MS);
  let daemon: RdsdDaemon | undefined;
  try {
    daemon = await startDelayedRdsd(ctx, relay.port);
    const [pooledPort, plainPort] = daemon.ports as [number, number];
    const status = statusReader(daemon);
    const ca = await readFile(ctx.caPath, "utf8");

    const direct: number[] = [];
    const plain: number[] = [];
    const cold: number[] = [];
    const repeat: number[] = [];
    // Spares follow use: a target keeps one only from its first client on (and pool.idleTimeout after the last).
    await connectAndSelect({ host: "127.0.0.1", port: pooledPort, application: "bench-first-client" });
    for (let i = 0; i < SAMPLES; i++) {
      await ctx.quiet();
      direct.push(await connectAndSelect({ host: "localhost", port: relay.port, password: ctx.db.password, ssl: { ca, servername: RDS_HOST } }));
      plain.push(await connectAndSelect({ host: "127.0.0.1", port: plainPort }));
      // A new application_name matches nothing parked: a cold login, on the spare once it is ready again.
      const application = `bench-cold-${i}`;
      await status.until((t) => t.spares >= 1);
      cold.push(await connectAndSelect({ host: "127.0.0.1", port: pooledPort, application }));
      await status.until((t) => t.parked >= 1);
      repeat.push(await connectAndSelect({ host: "127.0.0.1", port: pooledPort, application }));
    }
    const rt = (samples: number[]) => median(samples) / ROUND_TRIP_MS;
    const coldRt = rt(cold);
    const repeatRt = rt(repeat);
    ctx.log(`  connect through ${DELAY_MS} ms each way: direct ${rt(direct).toFixed(2)}, rdsd without reuse ${rt(plain).toFixed(2)}, cold ${coldRt.toFixed(2)}, repeat ${repeatRt.toFixed(2)} round trips`);
    return [
      {
        section: "connect",
        measure: `connect + select 1 through ${DELAY_MS} ms each way, rdsd repeat connect (parked connection)`,
        unit: "round trips",
        values: { direct: rt(direct), rdsd: repeatRt },
        better: "lower",
        goal: `<= ${REPEAT_GOAL}`,
        met: repeatRt <= REPEAT_GOAL,
        note: `the login is answered by rdsd, only the query crosses the delay; median of ${SAMPLES}; direct is a fresh TLS login straight to the database`,
      },
      {
        section: "connect",
        measure: `connect + select 1 through ${DELAY_MS} ms each way, rdsd cold connect (warm spare)`,
        unit: "round trips",
        values: { direct: rt(direct), rdsd: coldRt },
        better: "lower",
        goal: `<= ${COLD_GOAL}`,
        met: coldRt <= COLD_GOAL,
        note: `startup (the password in the same write) and query cross the delay; the spare already did SSLRequest and TLS; median of ${SAMPLES}`,
      },
      {
        section: "connect",
        measure: `connect + select 1 through ${DELAY_MS} ms each way, rdsd without reuse (pool: false)`,
        unit: "round trips",
        values: { direct: rt(direct), rdsd: rt(plain) },
        better: "lower",
        note: "SSLRequest, TLS, startup (the password in the same write) and the query all cross the delay",
      },
    ];
  } finally {
    await daemon?.stop();
    await relay.close();
  }
}

/** Two targets on the delayed database: t0 with reuse and one spare (as an SSM target gets by default), t1 with pool: false. */
async function startDelayedRdsd(ctx: BenchContext, relayPort: number): Promise<RdsdDaemon> {
  const ports = [await freePort(), await freePort()];
  const yaml = directDaemonConfig(ctx.caPath, [
    { port: ports[0]!, databasePort: relayPort, extra: ["pool: { spares: 1 }"] },
    { port: ports[1]!, databasePort: relayPort, extra: ["pool: false"] },
  ]);
  return startDaemonProcess(join(ctx.workDir, "rdsd-delayed"), yaml, ports, { BENCH_DB_PASSWORD: ctx.db.password });
}

/** Wall time of connect + `select 1` + end with node-postgres, in ms (the end is not counted). */
async function connectAndSelect(options: { host: string; port: number; password?: string; ssl?: { ca: string; servername: string }; application?: string }): Promise<number> {
  const client = new pg.Client({
    host: options.host,
    port: options.port,
    user: BENCH_USER,
    database: BENCH_DATABASE,
    ...(options.password ? { password: options.password } : {}),
    ssl: options.ssl ?? false,
    ...(options.application ? { application_name: options.application } : {}),
  });
  const started = performance.now();
  await client.connect();
  await client.query("select 1");
  const took = performance.now() - started;
  await client.end();
  return took;
}

/** Polls `rdsd status --json` for the first target (parking and spares happen after a client leaves). */
function statusReader(daemon: RdsdDaemon) {
  return {
    async until(ready: (t: { parked: number; spares: number }) => boolean, timeoutMs = 30_000): Promise<void> {
      const deadline = performance.now() + timeoutMs;
      for (;;) {
        const run = await runCommand(process.execPath, [RDSD_BIN, "status", "--json"], { env: { ...process.env, ...daemon.env } });
        const target = (JSON.parse(run.stdout) as { targets: Array<{ parked: number; spares: number }> }).targets[0]!;
        if (ready(target)) return;
        if (performance.now() > deadline) throw new Error(`rdsd status did not reach the expected pool state: ${JSON.stringify(target)}`);
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    },
  };
}
