import { homedir } from "node:os";
import type { Command } from "commander";
import { loadConfig, resolveConfigPath } from "@rdsd/config";
import { runtimeDir } from "@rdsd/control";
import { completionScript, type Shell } from "../completion.js";
import { EXIT } from "../exit.js";

/** `rdsd completion SHELL`: the script, on stdout. */
export function completionCommand(shell: Shell, program: Command): number {
  process.stdout.write(completionScript(shell, program));
  return EXIT.ok;
}

/** `rdsd __complete targets`: the config's target names, one a line (what the scripts call while completing). */
export async function completeTargetsCommand(opts: { config?: string }): Promise<number> {
  const configPath = resolveConfigPath({ ...(opts.config ? { flag: opts.config } : {}), env: process.env, home: homedir() });
  const config = await loadConfig(configPath, { runtimeDir: runtimeDir() });
  for (const target of config.targets) process.stdout.write(`${target.name}\n`);
  return EXIT.ok;
}
