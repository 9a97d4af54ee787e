import type { DaemonStatus, TargetState, TargetStatus } from "@rdsd/control";
import { ask } from "../daemon-client.js";
import { EXIT } from "../exit.js";
import { formatBytes, formatDuration, paintFor, table, type Paint } from "../terminal.js";

export async function statusCommand(target: string | undefined, opts: { json?: boolean }): Promise<number> {
  const status = await ask("status", target ? { target } : {});
  if (opts.json) {
    process.stdout.write(JSON.stringify(status, null, 2) + "\n");
  } else {
    process.stdout.write(formatStatus(status, paintFor(process.stdout), Date.now()) + "\n");
  }
  return EXIT.ok;
}

const STATE_COLOUR: Record<TargetState, keyof Paint> = { ready: "green", idle: "dim", connecting: "yellow", reconnecting: "yellow", degraded: "yellow", failed: "red" };

/** The human view of `rdsd status`: the daemon, one row per target, then each target's last error with its fix. */
export function formatStatus(status: DaemonStatus, paint: Paint, now: number): string {
  const daemon = `rdsd ${status.version}, pid ${status.pid}, up ${formatDuration((now - Date.parse(status.startedAt)) / 1000)}, config ${status.configFile}`;
  return [daemon, formatTargets(status.targets, paint, now)].join("\n");
}

/** One row per target, then each target's last error and warnings with their fix (`rdsd status`, `rdsd start`). */
export function formatTargets(targets: TargetStatus[], paint: Paint, now = Date.now()): string {
  const header = ["TARGET", "LISTEN", "STATE", "AWS", "SESSION", "UPTIME", "CONNS", "PARKED", "SPARES", "IN/OUT", "TOKEN AGE"].map((h) => paint.bold(h));
  const rows = targets.map((t) => [
    t.readOnly ? `${t.name} ${paint.yellow("(read-only)")}` : t.name,
    [...t.listen, ...(t.socket === null ? [] : [t.socket])].join(" "),
    paint[STATE_COLOUR[t.state]](t.state),
    awsColumn(t),
    t.sessionIds.length === 0 ? "-" : t.sessionIds.join(","),
    formatDuration(Math.max(0, (now - Date.parse(t.since)) / 1000)),
    String(t.connections),
    String(t.parked),
    String(t.spares),
    `${formatBytes(t.bytesFromClients)}/${formatBytes(t.bytesToClients)}`,
    t.tokenAgeSeconds === null ? "-" : formatDuration(t.tokenAgeSeconds),
  ]);
  const lines = [targets.length === 0 ? "no targets configured" : table([header, ...rows])];
  for (const t of targets.filter((t): t is TargetStatus & { lastError: NonNullable<TargetStatus["lastError"]> } => t.lastError !== null)) {
    lines.push("", `${paint.bold(t.name)}: ${paint.red(t.lastError.message)}`, `  fix: ${t.lastError.fix}`);
  }
  for (const t of targets) {
    for (const w of t.warnings) lines.push("", `${paint.bold(t.name)}: ${paint.yellow(`warning: ${w.message}`)}`, `  fix: ${w.fix}`);
  }
  return lines.join("\n");
}

/** The target's AWS identity as `profile@region` ("default" for the SDK's chain; "-" when it makes no AWS calls). */
function awsColumn(t: TargetStatus): string {
  if (t.region === null) return t.profile ?? "-";
  return `${t.profile ?? "default"}@${t.region}`;
}
