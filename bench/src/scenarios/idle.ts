import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { freePort, runCommand } from "@rdsd/testkit";
import type { DaemonStatus } from "@rdsd/control";
import { EMULATOR_BIN, RDSD_BIN } from "../paths.js";
import { startProcess } from "../proc.js";
import { BENCH_DATABASE, RDS_HOST, startDaemonProcess, type RdsdDaemon } from "../servers.js";
import type { BenchContext, ResultRow } from "../model.js";
import { awsEnv, emulatorConfigHead, emulatorInfo, type EmulatorInfo } from "./tunnels.js";

/** Half of what 10 idle eager targets cost before liveness stopped polling (380 ms CPU and ~2,400 wake-ups a minute). */
const CPU_GOAL_SECONDS_PER_MIN = 0.19;
const WAKEUPS_GOAL_PER_MIN = 1_200;
/** Sessions open and their first probes finish before the watch starts. */
const SETTLE_MS = 10_000;

/**
 * What an idle daemon costs the machine: `targets` eager native SSM targets against the emulator, no client,
 * CPU seconds and wake-ups (context switches of all its threads) per minute. Measured twice: with warm spares
 * off (`pool: { spares: 0 }`), the tunnels' own cost, and with the default config (a spare per target). Spares
 * follow use: a target keeps none until its first client, so a daemon that has had no client should cost the
 * same in both rows; the goals apply to both. A gap between them means an idle target dials its database.
 */
export async function measureIdleTunnels(ctx: BenchContext, targets: number): Promise<ResultRow[]> {
  return [...(await measureIdle(ctx, targets, { spares: false })), ...(await measureIdle(ctx, targets, { spares: true }))];
}

async function measureIdle(ctx: BenchContext, targets: number, options: { spares: boolean }): Promise<ResultRow[]> {
  const emulator = startProcess(process.execPath, [EMULATOR_BIN, "--map", `${RDS_HOST}=127.0.0.1:${ctx.db.server.port}`]);
  let daemon: RdsdDaemon | undefined;
  try {
    const info = await emulatorInfo(emulator);
    const ports: number[] = [];
    for (let i = 0; i < targets; i++) ports.push(await freePort());
    const dir = join(ctx.workDir, options.spares ? "rdsd-idle-spares" : "rdsd-idle");
    daemon = await startDaemonProcess(dir, idleConfig(ctx, info, ports, options.spares), ports, { BENCH_DB_PASSWORD: ctx.db.password, ...awsEnv(ctx, info) });
    await waitUntilReady(daemon, targets);
    await sleep(SETTLE_MS);
    const before = await daemon.sample();
    const started = process.hrtime.bigint();
    await sleep(ctx.plan.idleSeconds * 1000);
    const after = await daemon.sample();
    const minutes = Number(process.hrtime.bigint() - started) / 60e9;
    const cpu = (after.cpuSeconds - before.cpuSeconds) / minutes;
    const wakeups = (after.contextSwitches - before.contextSwitches) / minutes;
    const label = `${targets} eager native targets, no client, ${options.spares ? "default config (spares: 1, none kept before a client)" : "warm spares off"}`;
    ctx.log(`  idle, ${label}: ${cpu.toFixed(3)} s CPU/min, ${wakeups.toFixed(0)} wake-ups/min`);
    const note = `daemon only (the emulator is another process), over ${ctx.plan.idleSeconds} s after the sessions opened${options.spares ? "; no client ever connected, so no spare is open (spares follow use)" : ""}`;
    const rows: ResultRow[] = [
      { section: "footprint", measure: `daemon CPU idle, ${label}`, unit: "s/min", values: { rdsd: cpu }, better: "lower", note },
      { section: "footprint", measure: `daemon wake-ups idle, ${label}`, unit: "/min", values: { rdsd: wakeups }, better: "lower", note: `voluntary + involuntary context switches of all its threads; ${note}` },
    ];
    // An idle daemon in its default config must meet the idle goals too: with no client it keeps no spare.
    Object.assign(rows[0]!, { goal: `< ${CPU_GOAL_SECONDS_PER_MIN} s/min`, met: cpu < CPU_GOAL_SECONDS_PER_MIN });
    Object.assign(rows[1]!, { goal: `< ${WAKEUPS_GOAL_PER_MIN}/min`, met: wakeups < WAKEUPS_GOAL_PER_MIN });
    return rows;
  } finally {
    await daemon?.stop();
    await emulator.stop();
  }
}

function idleConfig(ctx: BenchContext, info: EmulatorInfo, ports: number[], spares: boolean): string {
  const lines = emulatorConfigHead(ctx, info, ["tunnel: { driver: native, mode: eager }", ...(spares ? [] : ["pool: { spares: 0 }"])]);
  ports.forEach((port, i) => lines.push(`  idle${i}:`, `    host: ${RDS_HOST}`, `    listen: "127.0.0.1:${port}"`, `    database: ${BENCH_DATABASE}`));
  return lines.join("\n") + "\n";
}

/** Polls `rdsd status` until every target is ready (their sessions open and probed). */
async function waitUntilReady(daemon: RdsdDaemon, targets: number): Promise<void> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    const r = await runCommand(process.execPath, [RDSD_BIN, "status", "--json"], { env: { ...process.env, ...daemon.env }, timeoutMs: 10_000 });
    if (r.code === 0 && (JSON.parse(r.stdout) as DaemonStatus).targets.filter((t) => t.state === "ready").length === targets) return;
    if (Date.now() > deadline) throw new Error(`the idle daemon's ${targets} targets were not ready within 60 s`);
    await sleep(500);
  }
}
