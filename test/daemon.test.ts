import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort, makeRdsLikeTls, runCommand, startPostgres, tempDir, type PostgresServer, type RdsLikeTls, type TempDir } from "@rdsd/testkit";

const RDSD = fileURLToPath(new URL("../packages/cli/bin/rdsd.js", import.meta.url));
const HOST = "orders-dev.abc123xyz.eu-west-2.rds.amazonaws.com";

let pgServer: PostgresServer;
let rds: RdsLikeTls;
let dir: TempDir;

beforeAll(async () => {
  rds = await makeRdsLikeTls(HOST);
  pgServer = await startPostgres({ tls: { certPem: rds.certPem, keyPem: rds.keyPem }, hba: ["hostssl all app 127.0.0.1/32 scram-sha-256", "hostnossl all all 127.0.0.1/32 reject"] });
  await pgServer.admin("CREATE ROLE app LOGIN PASSWORD 'app-secret'");
  await pgServer.admin("CREATE DATABASE orders OWNER app");
  await pgServer.admin("CREATE DATABASE app OWNER app");
  dir = await tempDir("rdsd-daemon-test-");
});

// Daemons a failed test did not stop: killed here, so a red run leaves no process behind.
const daemons = new Set<ChildProcess>();

afterAll(async () => {
  for (const child of daemons) if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  await pgServer?.stop();
  await rds?.cleanup();
  await dir?.cleanup();
});

/** Starts `rdsd daemon` as a real process and resolves once it logs that it runs. */
async function startDaemon(configPath: string, env: NodeJS.ProcessEnv = {}): Promise<{ child: ChildProcess; output: () => string }> {
  const child = spawn(process.execPath, [RDSD, "daemon", "--config", configPath], {
    env: { ...process.env, RDSD_STATE_DIR: join(dir.path, "state"), RDSD_RUNTIME_DIR: join(dir.path, "run"), ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  daemons.add(child);
  let output = "";
  child.stdout!.on("data", (c: Buffer) => (output += c.toString()));
  child.stderr!.on("data", (c: Buffer) => (output += c.toString()));
  await new Promise<void>((resolve, reject) => {
    const check = () => {
      if (output.includes("rdsd is running")) resolve();
    };
    child.stderr!.on("data", check);
    child.once("exit", (code) => reject(new Error(`daemon exited with ${code}: ${output}`)));
  });
  return { child, output: () => output };
}

function waitForOutput(child: ChildProcess, output: () => string, text: string): Promise<void> {
  return new Promise((resolve) => {
    const check = () => {
      if (output().includes(text)) {
        child.stderr!.off("data", check);
        resolve();
      }
    };
    child.stderr!.on("data", check);
  });
}

/** Target `orders` on `port`: app's password login, straight to the test's PostgreSQL, verified with `caPath`; then `extra`. */
function ordersConfig(port: number, caPath: string, extra = ""): string {
  return `targets:
  orders:
    host: ${HOST}
    listen: "127.0.0.1:${port}"
    user: app
    database: orders
    auth: { password: { env: APP_PASSWORD } }
    tls: { ca: ${caPath} }
    tunnel: { driver: direct, address: "127.0.0.1:${pgServer.port}" }
${extra}`;
}

describe("rdsd daemon (foreground, real process)", () => {
  it("serves every configured target and stops cleanly on SIGTERM", async () => {
    const [portA, portB] = [await freePort(), await freePort()];
    const configPath = join(dir.path, "two-targets.yaml");
    await writeFile(
      configPath,
      `defaults:
  user: app
  auth: { password: { env: APP_PASSWORD } }
  tls: { ca: ${rds.caPath} }
  tunnel: { driver: direct }
targets:
  orders:
    host: ${HOST}
    listen: ${portA}
    database: orders
    tunnel: { address: "127.0.0.1:${pgServer.port}" }
  other:
    host: ${HOST}
    listen: "127.0.0.1:${portB}"
    tunnel: { address: "127.0.0.1:${pgServer.port}" }
`,
    );
    const { child, output } = await startDaemon(configPath, { APP_PASSWORD: "app-secret" });
    for (const [port, db] of [[portA, "orders"], [portB, "app"]] as const) {
      const client = new pg.Client({ host: "localhost", port, user: "whoever" });
      await client.connect();
      const { rows } = await client.query("SELECT current_user AS u, current_database() AS d");
      // node-postgres sends database=whoever (its user): that names no database, so the target's default
      // applies, or PostgreSQL's own default (the target user's name) when the target has none.
      expect(rows[0]).toEqual({ u: "app", d: db });
      await client.end();
    }
    // SIGHUP reloads: the removed target stops listening, the kept one keeps serving.
    await writeFile(configPath, (await readFile(configPath, "utf8")).replace(/  other:[\s\S]*$/, ""));
    const reloaded = waitForOutput(child, output, "configuration reloaded");
    child.kill("SIGHUP");
    await reloaded;
    expect(output()).toMatch(/configuration reloaded .*removed=other/);
    await expect(new pg.Client({ host: "localhost", port: portB, user: "whoever" }).connect()).rejects.toThrow(/ECONNREFUSED/);
    const kept = new pg.Client({ host: "localhost", port: portA, user: "whoever" });
    await kept.connect();
    await kept.end();

    child.kill("SIGTERM");
    const [code] = await once(child, "exit");
    expect(code).toBe(0);
    expect(output()).toContain("stopping");
    expect(output()).not.toContain("app-secret");
  });

  it("restart picks up a CA file that was missing at start: clients are told why, then served", async () => {
    const port = await freePort();
    const caPath = join(dir.path, "ca-arrives-later.pem");
    const configPath = join(dir.path, "late-ca.yaml");
    await writeFile(configPath, ordersConfig(port, caPath));
    const { child } = await startDaemon(configPath, { APP_PASSWORD: "app-secret" });
    const early = new pg.Client({ host: "127.0.0.1", port, user: "whoever" });
    await expect(early.connect()).rejects.toThrow(`cannot read the CA file ${caPath}`);
    await writeFile(caPath, rds.caPem);
    const env = { ...process.env, RDSD_STATE_DIR: join(dir.path, "state"), RDSD_RUNTIME_DIR: join(dir.path, "run") };
    const restart = await runCommand(process.execPath, [RDSD, "restart", "orders"], { env });
    expect(restart.code).toBe(0);
    const client = new pg.Client({ host: "127.0.0.1", port, user: "whoever" });
    await client.connect();
    expect((await client.query("SELECT current_user AS u")).rows[0]).toEqual({ u: "app" });
    await client.end();
    child.kill("SIGTERM");
    await once(child, "exit");
  });

  it("parks a cleanly ended connection for the next client, counts it in status, and closes it on restart; pool: false turns reuse off", async () => {
    const port = await freePort();
    const configPath = join(dir.path, "pool.yaml");
    const config = (pool: string) => ordersConfig(port, rds.caPath, pool);
    await writeFile(configPath, config(""));
    const { child, output } = await startDaemon(configPath, { APP_PASSWORD: "app-secret" });
    const env = { ...process.env, RDSD_STATE_DIR: join(dir.path, "state"), RDSD_RUNTIME_DIR: join(dir.path, "run") };
    const status = async () => {
      const run = await runCommand(process.execPath, [RDSD, "status", "--json"], { env });
      return (JSON.parse(run.stdout) as { targets: Array<{ parked: number; spares: number }> }).targets[0]!;
    };
    // Parking happens after the client has gone (a reset round trip): polled, bounded, as no event reaches here.
    const untilParked = async (n: number) => {
      const deadline = performance.now() + 10_000;
      while ((await status()).parked !== n) {
        if (performance.now() > deadline) throw new Error(`status never showed parked: ${n}`);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    };
    const backendOfNewClient = async () => {
      const client = new pg.Client({ host: "127.0.0.1", port, user: "whoever" });
      await client.connect();
      const pid = (await client.query("SELECT pg_backend_pid() AS pid")).rows[0].pid as number;
      await client.end();
      return pid;
    };

    const first = await backendOfNewClient();
    await untilParked(1);
    expect(await status()).toMatchObject({ parked: 1, spares: 0 });
    expect(await backendOfNewClient()).toBe(first);
    await untilParked(1);

    expect((await runCommand(process.execPath, [RDSD, "restart", "orders"], { env })).code).toBe(0);
    expect((await status()).parked).toBe(0);
    const deadline = performance.now() + 10_000;
    while ((await pgServer.admin("SELECT 1 FROM pg_stat_activity WHERE pid = $1", [first])).rows.length > 0) {
      if (performance.now() > deadline) throw new Error(`backend ${first} outlived the restart`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }

    await writeFile(configPath, config("    pool: false\n"));
    const reloaded = waitForOutput(child, output, "configuration reloaded");
    child.kill("SIGHUP");
    await reloaded;
    const a = await backendOfNewClient();
    const b = await backendOfNewClient();
    expect(b).not.toBe(a);
    expect((await status()).parked).toBe(0);
    child.kill("SIGTERM");
    await once(child, "exit");
  }, 90_000);

  it("refuses a bad config naming file, line and key, with exit code 1", async () => {
    const configPath = join(dir.path, "bad.yaml");
    await writeFile(configPath, `targets:\n  orders:\n    host: ${HOST}\n    listen: abc\n    user: app\n    tunnel: { driver: direct }\n`);
    const result = await runCommand(process.execPath, [RDSD, "daemon", "--config", configPath], { env: { ...process.env, RDSD_STATE_DIR: join(dir.path, "state"), RDSD_RUNTIME_DIR: join(dir.path, "run") } });
    expect(result.code).toBe(1);
    expect(result.stderr).toContain(`${configPath}:4:13: targets.orders.listen`);
  });

  it("treats an unknown flag as a usage error (exit 2)", async () => {
    const result = await runCommand(process.execPath, [RDSD, "daemon", "--no-such-flag"]);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain("unknown option");
  });
});
