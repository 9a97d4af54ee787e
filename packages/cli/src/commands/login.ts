import { spawn } from "node:child_process";
import { homedir } from "node:os";
import { loadConfig, resolveConfigPath } from "@rdsd/config";
import { controlSocketPath, runtimeDir } from "@rdsd/control";
import { ssoSessionsInUse } from "@rdsd/daemon";
import { unixSocketInUse } from "@rdsd/sock-diag";
import { ask } from "../daemon-client.js";
import { CliError, EXIT } from "../exit.js";

/**
 * `rdsd login`: `aws sso login` once per distinct SSO session the config's targets need that has expired (every
 * one with --all), then the running daemon retries the targets that depend on them at once.
 */
export async function loginCommand(opts: { config?: string; all?: boolean }): Promise<number> {
  const configPath = resolveConfigPath({ ...(opts.config ? { flag: opts.config } : {}), env: process.env, home: homedir() });
  const config = await loadConfig(configPath, { runtimeDir: runtimeDir() });
  const sessions = await ssoSessionsInUse(config);
  const chosen = opts.all ? sessions : sessions.filter((s) => s.expired);
  if (sessions.length === 0) {
    process.stdout.write("no target uses an SSO profile: nothing to log in to\n");
    return EXIT.ok;
  }
  if (chosen.length === 0) {
    for (const s of sessions) process.stdout.write(`SSO session ${s.session} (profile ${s.loginProfile}; ${s.targets.join(", ")}) is valid until ${s.expiresAt!.toISOString()}\n`);
    return EXIT.ok;
  }
  for (const s of chosen) {
    process.stdout.write(`logging in to SSO session ${s.session} for ${s.targets.join(", ")}: aws sso login --profile ${s.loginProfile}\n`);
    const code = await runAws(["sso", "login", "--profile", s.loginProfile]);
    if (code !== 0) throw new CliError(`\`aws sso login --profile ${s.loginProfile}\` failed (exit ${code})`, "run it yourself to see why, then `rdsd login` again");
  }
  if (!(await unixSocketInUse(controlSocketPath()))) {
    process.stdout.write("the daemon is not running: its targets use the new sessions when it starts (`rdsd start`)\n");
    return EXIT.ok;
  }
  // Only targets that are not serving: a ready target keeps its sessions and picks up new credentials by itself.
  const affected = new Set(chosen.flatMap((s) => s.targets));
  const status = await ask("status", {});
  const retry = status.targets.filter((t) => affected.has(t.name) && t.state !== "ready").map((t) => t.name);
  for (const name of retry) await ask("restart", { target: name }, 120_000);
  process.stdout.write(retry.length === 0 ? "the daemon's targets were already serving\n" : `the daemon retried ${retry.join(", ")}\n`);
  return EXIT.ok;
}

function runAws(args: string[]): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn("aws", args, { stdio: "inherit" });
    child.once("error", (err: NodeJS.ErrnoException) =>
      reject(err.code === "ENOENT" ? new CliError("the AWS CLI (`aws`) is not on PATH", "install AWS CLI v2 (https://docs.aws.amazon.com/cli/latest/userguide/getting-started-install.html)") : err),
    );
    child.once("exit", (code, signal) => resolve(code ?? (signal ? 128 : 1)));
  });
}
