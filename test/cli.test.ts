import { spawn } from "node:child_process";
import { once } from "node:events";
import { readFile, stat, writeFile } from "node:fs/promises";
import net from "node:net";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { DaemonStatus, ProbeReport } from "@rdsd/control";
import { freePort, makeRdsLikeTls, pgClientEnv, runCommand, startPostgres, tempDir, type PostgresServer, type RdsLikeTls, type TempDir } from "@rdsd/testkit";

// The CLI end to end against one real daemon process (started with `rdsd start`), a real PostgreSQL with
// RDS-like TLS behind it (direct driver), and the contract's exit codes.

const RDSD = fileURLToPath(new URL("../packages/cli/bin/rdsd.js", import.meta.url));
const HOST = "orders-dev.abc123xyz.eu-west-2.rds.amazonaws.com";

let pgServer: PostgresServer;
let rds: RdsLikeTls;
let dir: TempDir;
let env: NodeJS.ProcessEnv;
let configPath: string;
const ports: Record<string, number> = {};

beforeAll(async () => {
  rds = await makeRdsLikeTls(HOST);
  pgServer = await startPostgres({ tls: { certPem: rds.certPem, keyPem: rds.keyPem }, hba: ["hostssl all app 127.0.0.1/32 scram-sha-256", "hostnossl all all 127.0.0.1/32 reject"] });
  await pgServer.admin("CREATE ROLE app LOGIN PASSWORD 'app-secret'");
  await pgServer.admin("CREATE DATABASE orders OWNER app");
  dir = await tempDir("rdsd-cli-");
  env = { ...process.env, RDSD_STATE_DIR: join(dir.path, "state"), RDSD_RUNTIME_DIR: join(dir.path, "run"), APP_PASSWORD: "app-secret", NO_COLOR: "1" };
  for (const name of ["orders", "billing", "reports", "broken"]) ports[name] = await freePort();
  configPath = join(dir.path, "rdsd.yaml");
  await writeConfig(["orders", "billing", "broken"]);
});

afterAll(async () => {
  await rdsd(["stop"]).catch(() => {});
  await pgServer?.stop();
  await rds?.cleanup();
  await dir?.cleanup();
});

/** The config with the named targets; `broken` points at a closed port. */
async function writeConfig(names: string[]): Promise<void> {
  const closed = await freePort();
  const target = (name: string) =>
    `  ${name}:\n    host: ${HOST}\n    listen: "127.0.0.1:${ports[name]}"\n    database: orders\n    tunnel: { address: "127.0.0.1:${name === "broken" ? closed : pgServer.port}" }\n`;
  await writeFile(
    configPath,
    `defaults:\n  user: app\n  auth: { password: { env: APP_PASSWORD } }\n  tls: { ca: ${rds.caPath} }\n  tunnel: { driver: direct }\ntargets:\n${names.map(target).join("")}`,
  );
}

function rdsd(args: string[], extraEnv: NodeJS.ProcessEnv = {}) {
  return runCommand(process.execPath, [RDSD, ...args], { env: { ...env, ...extraEnv }, timeoutMs: 60_000 });
}

async function status(): Promise<DaemonStatus> {
  const result = await rdsd(["status", "--json"]);
  expect(result.code).toBe(0);
  return JSON.parse(result.stdout) as DaemonStatus;
}

async function connect(name: string): Promise<pg.Client> {
  const client = new pg.Client({ host: "127.0.0.1", port: ports[name], user: "anyone" });
  await client.connect();
  return client;
}

async function whoAmI(client: pg.Client): Promise<string> {
  return (await client.query<{ u: string }>("SELECT current_user AS u")).rows[0]!.u;
}

/** Whether the process runs (a zombie waiting for a reaper that never comes in a container counts as ended). */
async function running(pid: number): Promise<boolean> {
  const stat = await readFile(`/proc/${pid}/stat`, "utf8").catch(() => "");
  return stat !== "" && !/^\d+ \(.*\) Z/.test(stat);
}

function refusesConnections(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, "127.0.0.1");
    socket.once("connect", () => (socket.destroy(), resolve(false)));
    socket.once("error", () => resolve(true));
  });
}

describe("rdsd CLI against a real daemon", () => {
  it("says the daemon is not running (exit 3) and how to start it", async () => {
    for (const args of [["status"], ["stop"], ["test", "orders"], ["url", "orders"]]) {
      const result = await rdsd(args);
      expect(result.code, args.join(" ")).toBe(3);
      expect(result.stderr).toContain("rdsd is not running");
      expect(result.stderr).toContain("rdsd start");
    }
  });

  it("treats unknown flags and missing arguments as usage errors (exit 2)", async () => {
    expect((await rdsd(["status", "--no-such-flag"])).code).toBe(2);
    expect((await rdsd(["test"])).code).toBe(2);
    expect((await rdsd(["frobnicate"])).code).toBe(2);
    const help = await rdsd(["status", "--help"]);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain("--json");
  });

  it("starts the daemon in the background, ready when it returns, on a private socket", async () => {
    const started = await rdsd(["start", "--config", configPath]);
    expect(started.code, started.stderr).toBe(0);
    expect(started.stdout).toMatch(/rdsd started \(pid \d+/);
    expect((await stat(join(dir.path, "run"))).mode & 0o777).toBe(0o700);
    const socket = await stat(join(dir.path, "run", "rdsd.sock"));
    expect(socket.isSocket()).toBe(true);
    expect(socket.mode & 0o777).toBe(0o600);
    // Ready means serving: a client gets through at once.
    const client = await connect("orders");
    expect(await whoAmI(client)).toBe("app");
    await client.end();
  });

  it("refuses a second daemon on the same socket, leaving the first one serving", async () => {
    const second = await runCommand(process.execPath, [RDSD, "daemon", "--config", configPath], { env, timeoutMs: 30_000 });
    expect(second.code).toBe(1);
    expect(second.stderr).toContain("another rdsd daemon is already running");
    expect((await status()).targets).toHaveLength(3);
  });

  it("reports status as JSON with the documented shape, and as a table", async () => {
    const s = await status();
    expect(s.targets.map((t) => t.name)).toEqual(["orders", "billing", "broken"]);
    const orders = s.targets[0]!;
    expect(orders).toMatchObject({ name: "orders", listen: [`127.0.0.1:${ports.orders}`], state: "ready", driver: "direct", host: HOST, port: 5432, user: "app", database: "orders", sessionIds: [], lastError: null });
    expect(typeof orders.connections).toBe("number");
    expect(Date.parse(orders.since)).not.toBeNaN();
    expect(s.socket).toBe(join(dir.path, "run", "rdsd.sock"));

    const table = await rdsd(["status"]);
    expect(table.code).toBe(0);
    expect(table.stdout).toMatch(/TARGET\s+LISTEN\s+STATE/);
    expect(table.stdout).toMatch(new RegExp(`orders\\s+127\\.0\\.0\\.1:${ports.orders}\\s+ready`));
    expect(table.stdout).not.toContain("\x1b["); // no colours off a terminal

    const one = await rdsd(["status", "billing", "--json"]);
    expect((JSON.parse(one.stdout) as DaemonStatus).targets.map((t) => t.name)).toEqual(["billing"]);
    const unknown = await rdsd(["status", "nosuch"]);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toContain("no target named nosuch (targets: orders, billing, broken)");
  });

  it("tests a target stage by stage, and names the stage that fails", async () => {
    const good = await rdsd(["test", "orders", "--json"]);
    expect(good.code, good.stdout).toBe(0);
    const report = JSON.parse(good.stdout) as ProbeReport;
    expect(report.stages.map((s) => [s.name, s.status])).toEqual([
      ["credentials", "ok"], ["bastion", "skipped"], ["tunnel", "ok"], ["tls", "ok"], ["login", "ok"], ["query", "ok"],
    ]);
    expect(report.stages.find((s) => s.name === "tls")!.detail).toContain(`verify-full: certificate valid for ${HOST}`);
    expect(report.stages.find((s) => s.name === "query")!.detail).toBe("SELECT 1 returned 1");
    expect(report.stages.every((s) => Number.isInteger(s.ms) && s.ms >= 0)).toBe(true);

    const bad = await rdsd(["test", "broken"]);
    expect(bad.code).toBe(1);
    expect(bad.stdout).toMatch(/tunnel\s+FAILED/);
    expect(bad.stdout).toContain("the tunnel stage failed");
    expect(bad.stdout).toMatch(/tls\s+skipped/);
    expect(bad.stdout).not.toContain("app-secret");
  });

  it("restarts one target while another keeps its open connection", async () => {
    const billing = await connect("billing");
    const before = (await status()).targets.find((t) => t.name === "orders")!;
    const restarted = await rdsd(["restart", "orders"]);
    expect(restarted.code).toBe(0);
    expect(restarted.stdout).toBe("restarted orders\n");
    const after = await status();
    expect(Date.parse(after.targets.find((t) => t.name === "orders")!.since)).toBeGreaterThanOrEqual(Date.parse(before.since));
    expect(after.targets.find((t) => t.name === "billing")!.connections).toBe(1);
    expect(await whoAmI(billing)).toBe("app");
    const orders = await connect("orders");
    expect(await whoAmI(orders)).toBe("app");
    await Promise.all([orders.end(), billing.end()]);
    expect((await rdsd(["restart", "nosuch"])).code).toBe(1);
  });

  it("reloads: adds and removes targets, keeps untouched ones and their connections", async () => {
    const orders = await connect("orders");
    await writeConfig(["orders", "reports"]);
    const reloaded = await rdsd(["reload", "--json"]);
    expect(reloaded.code, reloaded.stderr).toBe(0);
    expect(JSON.parse(reloaded.stdout)).toEqual({ added: ["reports"], removed: ["billing", "broken"], changed: [], unchanged: ["orders"] });
    expect((await status()).targets.map((t) => t.name)).toEqual(["orders", "reports"]);
    expect(await refusesConnections(ports.billing!)).toBe(true);
    const reports = await connect("reports");
    expect(await whoAmI(reports)).toBe("app");
    expect(await whoAmI(orders)).toBe("app"); // never interrupted
    await Promise.all([orders.end(), reports.end()]);

    // A bad file is refused with its position; the running configuration stays.
    await writeFile(configPath, "targets:\n  orders:\n    listen: abc\n");
    const bad = await rdsd(["reload"]);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain(`${configPath}:3:`);
    expect((await status()).targets.map((t) => t.name)).toEqual(["orders", "reports"]);
  });

  it("prints a connection string that works", async () => {
    const url = await rdsd(["url", "orders"]);
    expect(url.stdout.trim()).toBe(`postgresql://app@127.0.0.1:${ports.orders}/orders`);
    const client = new pg.Client({ connectionString: url.stdout.trim() });
    await client.connect();
    expect(await whoAmI(client)).toBe("app");
    await client.end();
  });

  it("runs psql on a target, passing arguments through", async () => {
    const result = await runCommand(process.execPath, [RDSD, "psql", "orders", "--", "-X", "-At", "-c", "SELECT current_user || '@' || current_database()"], { env: pgClientEnv(env), timeoutMs: 30_000 });
    expect(result.stderr).toBe("");
    expect(result.code).toBe(0);
    expect(result.stdout.trim()).toBe("app@orders");
  });

  it("follows the log as the daemon writes it", async () => {
    await writeConfig(["orders", "reports"]);
    const follower = spawn(process.execPath, [RDSD, "logs", "-f", "-n", "1"], { env, stdio: ["ignore", "pipe", "pipe"] });
    let seen = "";
    try {
      const until = (text: string, after = 0) => new Promise<void>((resolve) => {
        const check = () => seen.indexOf(text, after) >= 0 && resolve();
        follower.stdout!.on("data", (c: Buffer) => ((seen += c.toString()), check()));
        check();
      });
      // The last line comes first; it is printed before the file is watched.
      await new Promise<void>((resolve) => follower.stdout!.once("data", (c: Buffer) => ((seen += c.toString()), resolve())));
      const before = seen.length;
      expect((await rdsd(["reload"])).code).toBe(0);
      await until("configuration reloaded", before);
      expect(seen.slice(before)).toMatch(/^\S+ info {2}configuration reloaded added=-/m);
    } finally {
      follower.kill("SIGINT");
      await once(follower, "exit");
    }
  });

  it("shows the daemon's log, without secrets", async () => {
    const logs = await rdsd(["logs", "-n", "200"]);
    expect(logs.code).toBe(0);
    expect(logs.stdout).toContain("configuration reloaded");
    expect(logs.stdout).not.toContain("app-secret");
  });

  it("doctor checks the config, CA file and ports, and fails on a port another program holds", async () => {
    const squatter = net.createServer();
    await new Promise<void>((resolve) => squatter.listen(0, "127.0.0.1", () => resolve()));
    const taken = (squatter.address() as net.AddressInfo).port;
    const doctorConfig = join(dir.path, "doctor.yaml");
    await writeFile(doctorConfig, `defaults:\n  user: app\n  auth: { password: { env: APP_PASSWORD } }\n  tls: { ca: ${rds.caPath} }\n  tunnel: { driver: direct }\ntargets:\n  orders:\n    host: ${HOST}\n    listen: "127.0.0.1:${ports.orders}"\n  squatted:\n    host: ${HOST}\n    listen: "127.0.0.1:${taken}"\n`);
    try {
      const result = await rdsd(["doctor", "--config", doctorConfig]);
      expect(result.code).toBe(1);
      expect(result.stdout).toMatch(/config\s+ok\s+2 target\(s\)/);
      expect(result.stdout).toMatch(/daemon\s+ok\s+running, pid \d+/);
      expect(result.stdout).toMatch(new RegExp(`ca file\\s+ok\\s+1 certificates at ${rds.caPath}`));
      expect(result.stdout).toMatch(new RegExp(`port orders 127\\.0\\.0\\.1:${ports.orders}\\s+ok\\s+in use by rdsd for this target`));
      expect(result.stdout).toMatch(new RegExp(`port squatted 127\\.0\\.0\\.1:${taken}\\s+FAIL\\s+taken by another program`));
    } finally {
      squatter.close();
    }
  });

  it("stops gracefully: exit 0, socket gone, then status says not running", async () => {
    const { pid } = await status();
    const stopped = await rdsd(["stop"]);
    expect(stopped.code).toBe(0);
    await expect(stat(join(dir.path, "run", "rdsd.sock"))).rejects.toMatchObject({ code: "ENOENT" });
    expect(await running(pid)).toBe(false);
    expect(await refusesConnections(ports.orders!)).toBe(true);
    expect((await rdsd(["status"])).code).toBe(3);
  });

  it("recovers the stale socket a killed daemon leaves behind", async () => {
    await writeConfig(["orders"]);
    const child = spawn(process.execPath, [RDSD, "daemon", "--config", configPath], { env, stdio: ["ignore", "ignore", "pipe"] });
    let err = "";
    await new Promise<void>((resolve, reject) => {
      child.stderr!.on("data", (c: Buffer) => ((err += c.toString()), err.includes("rdsd is running") && resolve()));
      child.once("exit", () => reject(new Error(err)));
    });
    child.kill("SIGKILL");
    await once(child, "exit");
    expect((await stat(join(dir.path, "run", "rdsd.sock"))).isSocket()).toBe(true);
    expect((await rdsd(["status"])).code).toBe(3);
    const started = await rdsd(["start", "--config", configPath]);
    expect(started.code, started.stderr).toBe(0);
    expect((await status()).targets.map((t) => t.name)).toEqual(["orders"]);
    expect((await rdsd(["stop"])).code).toBe(0);
  });

  it("fails to start with the reason and the log tail", async () => {
    await writeFile(configPath, "targets:\n  orders:\n    listen: abc\n");
    const result = await rdsd(["start", "--config", configPath]);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain("rdsd did not start: the daemon exited with code 1");
    expect(result.stderr).toContain(`${configPath}:3:`);
  });
});
