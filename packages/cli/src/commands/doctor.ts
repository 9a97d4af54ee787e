import { homedir } from "node:os";
import { resolveConfigPath } from "@rdsd/config";
import { controlSocketPath, stateDir } from "@rdsd/control";
import { runDoctor, type DoctorCheck } from "@rdsd/daemon";
import { runningDaemon } from "../daemon-client.js";
import { EXIT } from "../exit.js";
import { paintFor, table } from "../terminal.js";

/**
 * `rdsd doctor`: every check with its finding; exit 1 when one fails. It checks what the running daemon
 * runs (its config file and state dir) unless --config names another file.
 */
export async function doctorCommand(opts: { config?: string; json?: boolean }): Promise<number> {
  const daemon = await runningDaemon();
  const configPath = opts.config || !daemon ? resolveConfigPath({ ...(opts.config ? { flag: opts.config } : {}), env: process.env, home: homedir() }) : daemon.configFile;
  const checks = await runDoctor({ configPath, stateDir: daemon?.stateDir ?? stateDir(), socketPath: controlSocketPath() });
  const ok = !checks.some((c) => c.status === "fail");
  if (opts.json) process.stdout.write(JSON.stringify({ ok, checks }, null, 2) + "\n");
  else process.stdout.write(formatDoctor(checks) + "\n");
  return ok ? EXIT.ok : EXIT.failure;
}

function formatDoctor(checks: DoctorCheck[]): string {
  const paint = paintFor(process.stdout);
  const mark = { ok: paint.green("ok"), warn: paint.yellow("warn"), fail: paint.red("FAIL"), skip: paint.dim("skip") };
  const lines = [table(checks.map((c) => [c.name, mark[c.status], c.detail]))];
  for (const c of checks.filter((c) => c.fix && (c.status === "fail" || c.status === "warn"))) lines.push(`${c.name}: ${c.fix}`);
  return lines.join("\n");
}
