import { readFile } from "node:fs/promises";
import os from "node:os";
import { join } from "node:path";
import { runCommand } from "@rdsd/testkit";
import { PGBOUNCER_BIN } from "./packages.js";
import { REPO_ROOT } from "./paths.js";

export interface MachineDescription {
  cpuModel: string;
  cores: number;
  memoryGb: number;
  os: string;
  kernel: string;
  node: string;
  postgres: string;
  pgbench: string;
  pgbouncer: string;
  gitCommit: string;
  /** Load average when the run started: other work on the machine skews the figures. */
  loadAverage: number[];
}

export async function describeMachine(binDir: string): Promise<MachineDescription> {
  const first = async (cmd: string, args: string[]) => {
    try {
      return (await runCommand(cmd, args)).stdout.split("\n")[0]?.trim() ?? "?";
    } catch {
      return "?";
    }
  };
  let osName = os.type();
  try {
    osName = /^PRETTY_NAME="?([^"\n]*)"?/m.exec(await readFile("/etc/os-release", "utf8"))?.[1] ?? osName;
  } catch {
    // not Linux-like: keep os.type()
  }
  const gitStatus = await first("git", ["-C", REPO_ROOT, "status", "--porcelain", "--", "packages"]);
  return {
    cpuModel: os.cpus()[0]?.model ?? "?",
    cores: os.cpus().length,
    memoryGb: Math.round(os.totalmem() / 1e9),
    os: osName,
    kernel: os.release(),
    node: process.version,
    postgres: await first(join(binDir, "postgres"), ["--version"]),
    pgbench: await first(join(binDir, "pgbench"), ["--version"]),
    pgbouncer: await first(PGBOUNCER_BIN, ["--version"]),
    gitCommit: (await first("git", ["-C", REPO_ROOT, "rev-parse", "--short", "HEAD"])) + (gitStatus && gitStatus !== "?" ? " (packages/ modified)" : ""),
    loadAverage: os.loadavg().map((l) => Math.round(l * 100) / 100),
  };
}
