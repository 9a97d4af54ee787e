import { spawn } from "node:child_process";
import { once } from "node:events";
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { DaemonStatus } from "@rdsd/control";
import { pgClientEnv, processesWorkingIn, runCommand, tempDir, type TempDir } from "@rdsd/testkit";

// `rdsd demo` as a newcomer runs it: a real process, psql through the whole path (proxy, native SSM
// tunnel, emulator, verify-full TLS, IAM token checked by the RDS stand-in), then Ctrl-C.

const RDSD = fileURLToPath(new URL("../packages/cli/bin/rdsd.js", import.meta.url));
const REPO = fileURLToPath(new URL("..", import.meta.url));
let dir: TempDir;

beforeAll(async () => {
  dir = await tempDir("rdsd-demo-test-");
});
afterAll(async () => {
  await dir?.cleanup();
});

describe("rdsd demo", () => {
  it("serves psql as the IAM user through the native SSM tunnel, its hints work as typed, Ctrl-C in psql cancels, Ctrl-C in the demo leaves nothing behind", async () => {
    const env = { ...process.env, RDSD_RUNTIME_DIR: join(dir.path, "run") };
    const demo = spawn(process.execPath, [RDSD, "demo"], { env, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    demo.stderr!.on("data", (c: Buffer) => (stderr += c.toString()));
    const exited = once(demo, "exit");
    try {
      await new Promise<void>((resolve, reject) => {
        demo.stdout!.on("data", (c: Buffer) => {
          stdout += c.toString();
          if (stdout.includes("Ctrl-C stops everything")) resolve();
        });
        demo.once("exit", (code) => reject(new Error(`demo exited with ${code}:\n${stderr}`)));
      });
      const psqlLine = /psql "(host=localhost port=\d+ dbname=orders)"/.exec(stdout);
      expect(psqlLine, stdout).not.toBeNull();
      const pgDir = /on a private socket in (\S+)/.exec(stderr)![1]!;

      // Exactly what the demo tells a newcomer to type.
      const psql = await runCommand("psql", ["-X", "-At", psqlLine![1]!, "-c", "SELECT current_user || ' ' || current_database()"], { env: pgClientEnv({ PGCONNECT_TIMEOUT: "30" }) });
      expect(psql.stderr).toBe("");
      expect(psql.stdout.trim()).toBe("iam_dev orders");
      expect(stderr).toMatch(/IAM token accepted for iam_dev at orders-dev\.abc123xyz\.eu-west-2\.rds\.amazonaws\.com/);

      // The second target lives in a second AWS account, reached with its own profile.
      expect(stdout).toContain("orders-dev (AWS account 111111111111, profile rdsd-demo-dev):");
      expect(stdout).toContain("billing-dev (AWS account 222222222222, profile rdsd-demo-billing):");
      const billingLine = /psql "(host=localhost port=\d+ dbname=billing)"/.exec(stdout)![1]!;
      const billing = await runCommand("psql", ["-X", "-At", billingLine, "-c", "SELECT current_database()"], { env: pgClientEnv({ PGCONNECT_TIMEOUT: "30" }) });
      expect(billing.stderr).toBe("");
      expect(billing.stdout.trim()).toBe("billing");
      expect(stderr).toMatch(/IAM token accepted for iam_dev at billing-dev\.abc123xyz\.eu-west-2\.rds\.amazonaws\.com/);

      const status = JSON.parse((await runCommand(process.execPath, [RDSD, "status", "--json"], { env })).stdout) as DaemonStatus;
      const orders = status.targets.find((t) => t.name === "orders-dev")!;
      expect(orders).toMatchObject({ state: "ready", driver: "native", lastError: null });
      expect(orders.sessionIds).toHaveLength(1);
      expect(status.targets.map((t) => [t.name, t.profile, t.region])).toEqual([
        ["orders-dev", "rdsd-demo-dev", "eu-west-2"],
        ["billing-dev", "rdsd-demo-billing", "eu-west-2"],
      ]);
      expect(orders.tokenAgeSeconds).not.toBeNull();
      const port = Number(/port=(\d+)/.exec(psqlLine![1]!)![1]);

      // The hint for another terminal, typed as printed (a shell, from the checkout): it finds the demo's socket.
      const hint = /In another terminal: (.+?) status,/.exec(stdout)![1]!;
      expect(hint).toBe(`RDSD_RUNTIME_DIR=${env.RDSD_RUNTIME_DIR} npx rdsd`);
      const typed = await runCommand("sh", ["-c", `${hint} status`], { cwd: REPO, env: process.env, timeoutMs: 60_000 });
      expect(typed.code, typed.stderr).toBe(0);
      expect(typed.stdout).toMatch(/^orders-dev .* ready /m);

      // `rdsd ca` names the demo daemon's CA, so verify-full against it works.
      const ca = await runCommand(process.execPath, [RDSD, "ca"], { env });
      expect(ca.stdout.trim()).toBe(status.localCaPath);
      const verified = await runCommand("psql", ["-X", "-At", `host=localhost port=${port} dbname=orders sslmode=verify-full sslrootcert=${ca.stdout.trim()}`, "-c", "SELECT 1"], { env: pgClientEnv({ PGCONNECT_TIMEOUT: "30" }) });
      expect(verified.stderr).toBe("");
      expect(verified.stdout.trim()).toBe("1");
      // `rdsd logs` reads the demo daemon's log, not the default state dir's.
      const logs = await runCommand(process.execPath, [RDSD, "logs", "-n", "500"], { env });
      expect(logs.code, logs.stderr).toBe(0);
      expect(logs.stdout).toContain("client connected");

      // Ctrl-C in psql cancels the running query: psql -> rdsd -> tunnel -> the RDS stand-in -> PostgreSQL.
      const watcher = new pg.Client({ host: "127.0.0.1", port, database: "orders" });
      await watcher.connect();
      try {
        const sleeper = spawn("psql", ["-X", psqlLine![1]!, "-c", "SELECT pg_sleep(60)"], { env: pgClientEnv({ PGCONNECT_TIMEOUT: "30" }), stdio: ["ignore", "pipe", "pipe"] });
        let sleeperErr = "";
        sleeper.stderr!.on("data", (c: Buffer) => (sleeperErr += c.toString()));
        const sleeperExit = once(sleeper, "exit");
        const sleeping = async () => (await watcher.query("SELECT 1 FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(60)' AND state = 'active'")).rowCount;
        await expect.poll(sleeping, { timeout: 30_000 }).toBe(1);
        sleeper.kill("SIGINT");
        const [code] = await sleeperExit;
        expect(sleeperErr).toContain("canceling statement due to user request");
        expect(code).toBe(1);
      } finally {
        await watcher.end();
      }

      // One line per connection at most: a login line for each server connection rdsd logged in on (four
      // clients here: two psql, the watcher, the pg_sleep psql; fewer when rdsd reuses a parked one), one cancel.
      const perConnection = stderr.split("\n").filter((l) => l.startsWith("demo: ") && !/PostgreSQL from|SSM emulator/.test(l));
      const logins = perConnection.filter((l) => l.includes("IAM token accepted")).length;
      expect(logins).toBeGreaterThanOrEqual(1);
      expect(logins).toBeLessThanOrEqual(4);
      expect(perConnection.filter((l) => !l.includes("IAM token accepted"))).toEqual(["demo: cancel request passed to PostgreSQL"]);

      // The token and the keys that sign it never reach a log.
      const daemonLog = await readFile(status.logFile, "utf8");
      expect(daemonLog).toContain("client connected");
      for (const text of [daemonLog, stderr, stdout]) {
        expect(text).not.toMatch(/X-Amz-Signature|X-Amz-Credential/);
        expect(text).not.toContain("rdsd-demo-secret");
        expect(text).not.toContain("NodeVersionSupportWarning");
      }
      const demoDir = dirname(status.configFile);
      expect(existsSync(demoDir)).toBe(true);

      demo.kill("SIGINT");
      const [code] = await exited;
      expect(code).toBe(0);
      expect(stderr).toContain("stopped: daemon, SSM sessions, emulator and PostgreSQL");
      expect(await processesWorkingIn(pgDir)).toEqual([]);
      expect(existsSync(pgDir)).toBe(false);
      expect(existsSync(demoDir)).toBe(false);
      // The control socket's directory the demo's daemon made goes with it (no empty rdsd-<uid> left behind).
      expect(existsSync(join(dir.path, "run"))).toBe(false);
    } finally {
      if (demo.exitCode === null) demo.kill("SIGKILL");
    }
  }, 180_000);
});
