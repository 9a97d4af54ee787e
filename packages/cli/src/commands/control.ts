import type { ProbeReport } from "@rdsd/control";
import { ask } from "../daemon-client.js";
import { CliError, EXIT } from "../exit.js";
import { paintFor, table } from "../terminal.js";

export async function stopCommand(): Promise<number> {
  // The daemon answers once everything is stopped (clients given their grace, sessions terminated, socket
  // removed), then exits: its end closes the connection, and only then is the stop done.
  try {
    await ask("stop", {}, 120_000, true);
  } catch (err) {
    // Nothing to stop is what the caller wanted (as `systemctl stop` on a stopped unit).
    if (!(err instanceof CliError && err.code === EXIT.notRunning)) throw err;
    process.stdout.write("rdsd is not running\n");
    return EXIT.ok;
  }
  process.stdout.write("rdsd stopped\n");
  return EXIT.ok;
}

export async function restartCommand(target: string | undefined): Promise<number> {
  const { restarted } = await ask("restart", target ? { target } : {}, 120_000);
  process.stdout.write(restarted.length === 0 ? "no targets to restart\n" : `restarted ${restarted.join(", ")}\n`);
  return EXIT.ok;
}

export async function reloadCommand(opts: { json?: boolean }): Promise<number> {
  const report = await ask("reload", {}, 120_000);
  if (opts.json) process.stdout.write(JSON.stringify(report, null, 2) + "\n");
  else {
    const part = (label: string, names: string[]) => `${label}: ${names.length ? names.join(", ") : "-"}`;
    process.stdout.write(`reloaded; ${[part("added", report.added), part("removed", report.removed), part("changed", report.changed), part("unchanged", report.unchanged)].join("; ")}\n`);
  }
  // The rest of the file is applied; a target that could not start is the caller's to fix.
  for (const failure of report.failed) {
    const named = failure.message.includes(failure.target) ? failure.message : `target ${failure.target}: ${failure.message}`;
    process.stderr.write(`rdsd: ${named}\n  ${failure.fix}\n`);
  }
  return report.failed.length === 0 ? EXIT.ok : EXIT.failure;
}

export async function testCommand(target: string, opts: { json?: boolean }): Promise<number> {
  const report = await ask("test", { target }, 120_000);
  if (opts.json) process.stdout.write(JSON.stringify(report, null, 2) + "\n");
  else process.stdout.write(formatProbe(report) + "\n");
  return report.ok ? EXIT.ok : EXIT.failure;
}

export function formatProbe(report: ProbeReport): string {
  const paint = paintFor(process.stdout);
  const mark = { ok: paint.green("ok"), failed: paint.red("FAILED"), skipped: paint.dim("skipped") };
  const rows = report.stages.map((s) => [s.name, mark[s.status], s.status === "skipped" && s.ms === 0 ? "" : `${s.ms} ms`, s.error ? s.error.message : s.detail]);
  const failed = report.stages.find((s) => s.error);
  const lines = [table(rows)];
  if (failed?.error) lines.push("", `${report.target}: the ${failed.name} stage failed: ${failed.error.message}`, `  fix: ${failed.error.fix}`);
  else lines.push("", `${report.target}: ${paint.green("all stages passed")}`);
  for (const w of report.warnings) lines.push(`${report.target}: ${paint.yellow(`warning: ${w.message}`)}`, `  fix: ${w.fix}`);
  return lines.join("\n");
}
