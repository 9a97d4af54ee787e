#!/usr/bin/env node
// Runs the whole vitest suite, then prints one plain summary line ("N passed, N failed, N skipped")
// that CI systems read whatever the test runner. Exits with vitest's own exit code.
import { spawnSync } from "node:child_process";
import { mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";

const report = join(".tmp", "vitest-report.json");
mkdirSync(".tmp", { recursive: true });
const vitest = spawnSync(
  process.execPath,
  ["node_modules/vitest/vitest.mjs", "run", "--reporter=default", "--reporter=json", `--outputFile.json=${report}`, ...process.argv.slice(2)],
  { stdio: "inherit" },
);
try {
  const r = JSON.parse(readFileSync(report, "utf8"));
  const skipped = r.numPendingTests + r.numTodoTests;
  console.log(`\ntests: ${r.numPassedTests} passed, ${r.numFailedTests} failed, ${skipped} skipped`);
} catch {
  console.log("\ntests: no report (vitest did not finish)");
}
process.exit(vitest.status ?? 1);
