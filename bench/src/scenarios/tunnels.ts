import { existsSync } from "node:fs";
import { delimiter, join } from "node:path";
import { freePort } from "@rdsd/testkit";
import { runPsql, type Endpoint } from "../pgbench.js";
import { EMULATOR_BIN } from "../paths.js";
import { startProcess, waitForOutput, type RunningProcess } from "../proc.js";
import { BENCH_DATABASE, BENCH_USER, BULK_ROW_TEXT_BYTES, RDS_HOST, startDaemonProcess, type RdsdDaemon } from "../servers.js";
import type { BenchContext, ResultRow } from "../model.js";

export const BASTION = "i-0e1d2c3b4a5968778"; // the emulator's default managed instance
/** With N sessions, N parallel transfers should move at least this share of N times one session's rate. */
const SCALING_GOAL = 0.75;

export interface EmulatorInfo {
  endpoint: string;
  region: string;
  accessKeyId: string;
  secretAccessKey: string;
}

interface TunnelTarget {
  name: string;
  driver: "native" | "plugin";
  sessions: number;
  port: number;
}

/**
 * Throughput through SSM tunnels: the daemon's native and plugin drivers against the SSM emulator with the real
 * agent's pacing, with 1 and with N sessions, for one transfer and for N parallel transfers (COPY TO STDOUT).
 */
export async function measureTunnels(ctx: BenchContext): Promise<ResultRow[]> {
  const plugin = findPlugin();
  const emulator = startProcess(process.execPath, [EMULATOR_BIN, "--map", `${RDS_HOST}=127.0.0.1:${ctx.db.server.port}`]);
  let daemon: RdsdDaemon | undefined;
  try {
    const info = await emulatorInfo(emulator);
    const n = ctx.plan.tunnelSessions;
    const targets: TunnelTarget[] = [];
    for (const driver of plugin ? (["native", "plugin"] as const) : (["native"] as const)) {
      for (const sessions of [1, n]) targets.push({ name: `${driver}${sessions}`, driver, sessions, port: await freePort() });
    }
    daemon = await startDaemonProcess(join(ctx.workDir, "rdsd-tunnels"), tunnelConfig(ctx, info, targets, plugin), targets.map((t) => t.port), {
      BENCH_DB_PASSWORD: ctx.db.password,
      ...awsEnv(ctx, info),
    });
    const rows: ResultRow[] = [];
    for (const target of targets) {
      const endpoint: Endpoint = { label: `${target.name} tunnel`, host: "127.0.0.1", port: target.port, user: BENCH_USER, database: BENCH_DATABASE, sslmode: "disable" };
      await runPsql(ctx.binDir, endpoint, "SELECT 1", {}, 90_000); // waits for the sessions to open
      const one = await transferRate(ctx, endpoint, 1);
      const several = await transferRate(ctx, endpoint, n);
      ctx.log(`  ${target.name}: 1 transfer ${one.toFixed(2)} MB/s, ${n} parallel ${several.toFixed(2)} MB/s`);
      const label = `${target.driver} driver, ${target.sessions} session${target.sessions > 1 ? "s" : ""}`;
      rows.push({ section: "tunnels", measure: `${label}, 1 transfer`, unit: "MB/s", values: { rdsd: one }, better: "higher" });
      rows.push({ section: "tunnels", measure: `${label}, ${n} parallel transfers`, unit: "MB/s", values: { rdsd: several }, better: "higher" });
    }
    for (const driver of ["native", "plugin"] as const) {
      const single = rows.find((r) => r.measure === `${driver} driver, 1 session, ${n} parallel transfers`)?.values.rdsd;
      const multi = rows.find((r) => r.measure === `${driver} driver, ${n} sessions, ${n} parallel transfers`)?.values.rdsd;
      const scale = single && multi ? multi / single : undefined;
      rows.push({
        section: "tunnels",
        measure: `${driver} driver: ${n} parallel transfers, ${n} sessions vs 1`,
        unit: "x",
        values: scale !== undefined ? { rdsd: scale } : {},
        better: "higher",
        goal: `>= ${(SCALING_GOAL * n).toFixed(1)}x (scales with sessions)`,
        ...(scale !== undefined ? { met: scale >= SCALING_GOAL * n } : {}),
        note:
          scale !== undefined
            ? `each transfer ${ctx.plan.tunnelTransferMb} MB; emulator paced like the real agent (1024-byte messages, 1 ms apart)`
            : driver === "plugin"
              ? "not measured: session-manager-plugin is not installed (on PATH, or SESSION_MANAGER_PLUGIN=/path)"
              : "not measured",
      });
    }
    return rows;
  } finally {
    await daemon?.stop();
    await emulator.stop();
  }
}

/** Aggregate MB/s of `parallel` simultaneous COPY TO STDOUT transfers of the plan's size each. */
async function transferRate(ctx: BenchContext, endpoint: Endpoint, parallel: number): Promise<number> {
  const rows = Math.round((ctx.plan.tunnelTransferMb * 1e6) / (BULK_ROW_TEXT_BYTES + 10));
  const sql = `COPY (SELECT g, repeat('x', ${BULK_ROW_TEXT_BYTES}) FROM generate_series(${1_000_000}, ${1_000_000 + rows - 1}) g) TO STDOUT`;
  const bytesPerTransfer = rows * (BULK_ROW_TEXT_BYTES + 9); // 7-digit number, tab, newline
  const started = process.hrtime.bigint();
  await Promise.all(Array.from({ length: parallel }, () => runPsql(ctx.binDir, endpoint, sql, {}, 300_000)));
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  return (bytesPerTransfer * parallel) / 1e6 / seconds;
}

function tunnelConfig(ctx: BenchContext, info: EmulatorInfo, targets: TunnelTarget[], plugin: string | undefined): string {
  const lines = emulatorConfigHead(ctx, info);
  for (const t of targets) {
    const tunnel = t.driver === "plugin" ? `{ driver: plugin, sessions: ${t.sessions}, pluginPath: ${plugin} }` : `{ driver: native, sessions: ${t.sessions} }`;
    lines.push(`  ${t.name}:`, `    host: ${RDS_HOST}`, `    listen: "127.0.0.1:${t.port}"`, `    database: ${BENCH_DATABASE}`, `    tunnel: ${tunnel}`);
  }
  return lines.join("\n") + "\n";
}

/**
 * A bench config up to `targets:`: the emulator's region, and defaults every target shares (the bench user's
 * password login, the bench CA, the emulator's bastion), plus `defaults` lines of the scenario's own (unindented).
 */
export function emulatorConfigHead(ctx: BenchContext, info: EmulatorInfo, defaults: string[] = []): string[] {
  return [
    `aws: { region: ${info.region} }`,
    "defaults:",
    `  user: ${BENCH_USER}`,
    "  auth: { password: { env: BENCH_DB_PASSWORD } }",
    `  tls: { ca: ${ctx.caPath} }`,
    `  bastion: { instanceId: ${BASTION} }`,
    ...defaults.map((line) => `  ${line}`),
    "targets:",
  ];
}

/** Waits for the emulator's first line: the endpoint and keys to use. */
export async function emulatorInfo(emulator: RunningProcess): Promise<EmulatorInfo> {
  await waitForOutput(emulator, (out) => out.includes("}\n"), "rdsd-emulator", 30_000);
  return JSON.parse(emulator.output().split("\n")[0]!) as EmulatorInfo;
}

/** The daemon talks to the emulator only: its fake keys, its endpoint, no profile, no instance metadata. */
export function awsEnv(ctx: BenchContext, info: EmulatorInfo): NodeJS.ProcessEnv {
  return {
    AWS_ACCESS_KEY_ID: info.accessKeyId,
    AWS_SECRET_ACCESS_KEY: info.secretAccessKey,
    AWS_REGION: info.region,
    AWS_ENDPOINT_URL_SSM: info.endpoint,
    AWS_EC2_METADATA_DISABLED: "true",
    AWS_CONFIG_FILE: join(ctx.workDir, "no-aws-config"),
    AWS_SHARED_CREDENTIALS_FILE: join(ctx.workDir, "no-aws-credentials"),
    AWS_PROFILE: undefined,
    AWS_DEFAULT_PROFILE: undefined,
    AWS_SESSION_TOKEN: undefined,
    AWS_ENDPOINT_URL: undefined,
  };
}

/** The official plugin: $SESSION_MANAGER_PLUGIN, else `session-manager-plugin` on PATH. */
function findPlugin(): string | undefined {
  const explicit = process.env.SESSION_MANAGER_PLUGIN;
  if (explicit) return existsSync(explicit) ? explicit : undefined;
  for (const dir of (process.env.PATH ?? "").split(delimiter)) {
    const candidate = join(dir, "session-manager-plugin");
    if (dir && existsSync(candidate)) return candidate;
  }
  return undefined;
}
