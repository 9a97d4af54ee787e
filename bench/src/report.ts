import type { MachineDescription } from "./machine.js";
import { ratio } from "./stats.js";
import type { PathName, Plan, ResultRow } from "./model.js";

export interface BenchReport {
  startedAt: string;
  durationSeconds: number;
  plan: Plan;
  machine: MachineDescription;
  rows: ResultRow[];
  /** Share of both cores busy with other work just before each measurement (the bench waits for < 15%, bounded). */
  background: { median: number; max: number; samples: number };
  /** Certificates in the CA file given to rdsd and pgbouncer (RDS's global bundle has about 118). */
  caCertificates: number;
}

const COLUMNS = ["measure", "unit", "direct TLS", "rdsd", "pgbouncer", "rdsd/direct", "rdsd/pgbouncer", "goal", "holds"];

/** The one table of figures and ratios, as Markdown (readable as plain text too). */
export function renderTable(rows: readonly ResultRow[]): string {
  const lines = [row(COLUMNS), row(COLUMNS.map((_, i) => (i >= 2 && i <= 6 ? "---:" : "---")))];
  for (const r of rows) {
    const value = (path: PathName) => formatValue(r.values[path], r.unit);
    const measured = Object.keys(r.values).length > 0;
    lines.push(
      row([
        `${r.section}: ${r.measure}`,
        r.unit,
        value("direct"),
        measured ? value("rdsd") : "not measured",
        value("pgbouncer"),
        formatRatio(ratio(r.values.rdsd, r.values.direct)),
        formatRatio(ratio(r.values.rdsd, r.values.pgbouncer)),
        r.goal ?? "",
        r.goal === undefined ? "" : r.met === undefined ? "n/a" : r.met ? "yes" : "**no**",
      ]),
    );
  }
  return lines.join("\n");
}

export function renderNotes(rows: readonly ResultRow[]): string {
  return rows
    .filter((r) => r.note)
    .map((r) => `- ${r.section}: ${r.measure}: ${r.note}`)
    .join("\n");
}

export function renderMachine(m: MachineDescription): string {
  return [
    `- CPU: ${m.cpuModel}, ${m.cores} cores; memory ${m.memoryGb} GB; ${m.os}, kernel ${m.kernel}`,
    `- Node ${m.node}; ${m.postgres}; ${m.pgbench}; ${m.pgbouncer}`,
    `- rdsd commit ${m.gitCommit}; load average at start ${m.loadAverage.join(" / ")}`,
  ].join("\n");
}

export function renderMarkdown(report: BenchReport): string {
  const { plan } = report;
  return [
    `# rdsd benchmark, ${plan.mode} run, ${report.startedAt}`,
    "",
    renderMachine(report.machine),
    `- plan: pgbench ${plan.relaySeconds} s per relay run, ${plan.repetitions} repetition(s) (median), -C runs ${plan.connectSeconds} s, bulk ${plan.bulkRows} rows x ${plan.bulkRepetitions}, ${plan.idleClients} idle clients; took ${Math.round(report.durationSeconds)} s`,
    `- other work on the machine just before each measurement: median ${pct(report.background.median)}, max ${pct(report.background.max)} of both cores (${report.background.samples} samples)`,
    "",
    renderTable(report.rows),
    "",
    renderNotes(report.rows),
    "",
    `Paths: **direct TLS** = pgbench/psql straight to PostgreSQL with sslmode=require; **rdsd** = \`rdsd daemon\` (direct driver), client without TLS, upstream TLS verify-full against the RDS-shaped name, cleartext-password login (the shape of an IAM login with a cached token), with a CA file of ${report.caCertificates} certificates (the test CA padded with system CAs to the size of RDS's global bundle); **pgbouncer** = session pool mode, client without TLS (trust), upstream TLS verify-full (by the name \`localhost\`, also on the test certificate). All three share the machine's cores with PostgreSQL and pgbench. Ratios are rdsd's value over the other path's; MB = 10^6 bytes.`,
    "",
  ].join("\n");
}

function pct(v: number): string {
  return Number.isFinite(v) ? `${Math.round(v * 100)}%` : "-";
}

function row(cells: string[]): string {
  return `| ${cells.join(" | ")} |`;
}

function formatValue(v: number | undefined, unit: string): string {
  if (v === undefined || !Number.isFinite(v)) return "";
  if (unit === "TPS" || (unit === "MB/s" && v >= 10)) return Math.round(v).toLocaleString("en-US");
  if (unit === "us") return v.toFixed(0);
  return v < 10 ? v.toFixed(2) : v.toFixed(1);
}

function formatRatio(v: number): string {
  return Number.isFinite(v) ? `${v.toFixed(2)}x` : "";
}
