import { existsSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runCommand, tempDir, type TempDir } from "@rdsd/testkit";

// `rdsd demo --check`: the demo without a person at the keyboard (CI runs it on the installed package).

const RDSD = fileURLToPath(new URL("../packages/cli/bin/rdsd.js", import.meta.url));
let dir: TempDir;

beforeAll(async () => {
  dir = await tempDir("rdsd-demo-check-");
});
afterAll(async () => dir?.cleanup());

describe("rdsd demo --check", () => {
  it("tests every demo target end to end, stops everything and exits 0", async () => {
    const result = await runCommand(process.execPath, [RDSD, "demo", "--check"], { cwd: "/", env: { ...process.env, RDSD_RUNTIME_DIR: join(dir.path, "run"), NO_COLOR: "1" }, timeoutMs: 120_000 });
    expect(result.code, result.stderr).toBe(0);
    for (const target of ["orders-dev", "billing-dev"]) expect(result.stdout).toContain(`${target}: all stages passed`);
    for (const stage of ["credentials", "bastion", "tunnel", "tls", "login", "query"]) expect(result.stdout).toMatch(new RegExp(`^${stage} +ok `, "m"));
    expect(result.stderr).toContain("stopped: daemon, SSM sessions, emulator and PostgreSQL");
    expect(existsSync(join(dir.path, "run", "rdsd.sock"))).toBe(false);
  }, 150_000);
});
