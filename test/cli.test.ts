import { spawn } from "node:child_process";
import { once } from "node:events";
import { createHash } from "node:crypto";
import { mkdir, readFile, stat, writeFile } from "node:fs/promises";
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
    for (const args of [["status"], ["test", "orders"], ["restart"]]) {
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
      ["ca", "ok"], ["credentials", "ok"], ["bastion", "skipped"], ["tunnel", "ok"], ["tls", "ok"], ["login", "ok"], ["query", "ok"],
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
    expect(JSON.parse(reloaded.stdout)).toEqual({ added: ["reports"], removed: ["billing", "broken"], changed: [], unchanged: ["orders"], failed: [] });
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
    // Everything the follower prints is kept from the start: lines printed while `rdsd reload` runs are not lost.
    let seen = "";
    follower.stdout!.on("data", (c: Buffer) => (seen += c.toString()));
    try {
      const until = (text: string, after = 0) => new Promise<void>((resolve) => {
        const check = () => {
          if (seen.indexOf(text, after) < 0) return;
          follower.stdout!.off("data", check);
          resolve();
        };
        follower.stdout!.on("data", check);
        check();
      });
      // The last line comes first; it is printed before the file is followed.
      await until("\n");
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

// Issue 14: what a new user meets on every command. Same PostgreSQL and CLI, a daemon of its own.
describe("rdsd CLI: every command right the first time", () => {
  let first: string;
  let other: string;

  beforeAll(async () => {
    first = join(dir.path, "first.yaml");
    other = join(dir.path, "other.yaml");
    await writeFirst(["orders"]);
    await writeFile(other, "targets: {}\n");
  });

  afterAll(async () => {
    await rdsd(["stop"]).catch(() => {});
  });

  /** orders is served; `nocert` names a CA file that is not there; `squatted` listens on `taken`. */
  async function writeFirst(names: string[], taken?: number): Promise<void> {
    const listen: Record<string, number | undefined> = { orders: ports.orders, nocert: ports.reports, squatted: taken };
    const target = (name: string) =>
      `  ${name}:\n    host: ${HOST}\n    listen: "127.0.0.1:${listen[name]}"\n    database: orders\n    tunnel: { address: "127.0.0.1:${pgServer.port}" }\n` +
      (name === "nocert" ? `    tls: { ca: ${join(dir.path, "no-such-ca.pem")} }\n` : "");
    await writeFile(first, `defaults:\n  user: app\n  auth: { password: { env: APP_PASSWORD } }\n  tls: { ca: ${rds.caPath} }\n  tunnel: { driver: direct }\ntargets:\n${names.map(target).join("")}`);
  }

  it("with no daemon: stop exits 0, url works from the config, --json failures are JSON with the same exit codes", async () => {
    const stopped = await rdsd(["stop"]);
    expect(stopped.code).toBe(0);
    expect(stopped.stdout).toBe("rdsd is not running\n");

    const url = await rdsd(["url", "orders", "--config", first]);
    expect(url.code, url.stderr).toBe(0);
    expect(url.stdout).toBe(`postgresql://app@127.0.0.1:${ports.orders}/orders\n`);
    const tls = JSON.parse((await rdsd(["url", "orders", "--tls", "--json", "--config", first])).stdout) as { sslrootcert: string; url: string };
    expect(tls.sslrootcert).toBe(join(dir.path, "state", "local-ca", "ca.pem"));
    expect(tls.url).toContain("sslmode=verify-full");

    const status = await rdsd(["status", "--json"]);
    expect(status.code).toBe(3);
    expect(JSON.parse(status.stdout)).toEqual({ error: { message: expect.stringContaining("rdsd is not running") as unknown, fix: expect.stringContaining("rdsd start") as unknown, code: "not-running" } });
    const unknown = await rdsd(["url", "nosuch", "--json", "--config", first]);
    expect(unknown.code).toBe(1);
    expect((JSON.parse(unknown.stdout) as { error: { code: string; message: string } }).error).toMatchObject({ code: "unknown-target", message: expect.stringContaining("no target named nosuch") as unknown });
    const usage = await rdsd(["status", "--json", "--no-such-flag"]);
    expect(usage.code).toBe(2);
    expect((JSON.parse(usage.stdout) as { error: { code: string } }).error.code).toBe("usage");
  });

  it("start --wait returns with every target ready; another config is refused while one runs", async () => {
    const started = await rdsd(["start", "--wait=30s", "--config", first]);
    expect(started.code, started.stderr).toBe(0);
    expect(started.stdout).toMatch(/rdsd started \(pid \d+/);
    expect(started.stdout).toMatch(new RegExp(`^orders\\s+127\\.0\\.0\\.1:${ports.orders}\\s+ready`, "m"));

    const again = await rdsd(["start", "--config", first]);
    expect(again.code).toBe(0);
    expect(again.stdout).toContain("rdsd is already running");
    const elsewhere = await rdsd(["start", "--config", other]);
    expect(elsewhere.code).toBe(1);
    expect(elsewhere.stderr).toContain(`rdsd is already running with another config (${first}`);
  });

  it("reload exits 1 naming a target that cannot listen, and applies the rest", async () => {
    const squatter = net.createServer();
    await new Promise<void>((resolve) => squatter.listen(0, "127.0.0.1", () => resolve()));
    const taken = (squatter.address() as net.AddressInfo).port;
    try {
      await writeFirst(["orders", "squatted"], taken);
      const reloaded = await rdsd(["reload"]);
      expect(reloaded.code).toBe(1);
      expect(reloaded.stdout).toContain("added: squatted");
      expect(reloaded.stderr).toContain(`target squatted: 127.0.0.1:${taken} is already in use by another program`);
      const s = await status();
      expect(s.targets.find((t) => t.name === "squatted")!.state).toBe("failed");
      expect(s.targets.find((t) => t.name === "orders")!.state).toBe("ready");
    } finally {
      squatter.close();
    }
    await writeFirst(["orders"]);
    const json = await rdsd(["reload", "--json"]);
    expect(json.code, json.stderr).toBe(0);
    expect(JSON.parse(json.stdout)).toEqual({ added: [], removed: ["squatted"], changed: [], unchanged: ["orders"], failed: [] });
  });

  it("test has a ca stage of its own: a missing CA file is not a credentials failure; start --wait names the target", async () => {
    const good = JSON.parse((await rdsd(["test", "orders", "--json"])).stdout) as ProbeReport;
    expect(good.stages.map((s) => [s.name, s.status])).toEqual([
      ["ca", "ok"], ["credentials", "ok"], ["bastion", "skipped"], ["tunnel", "ok"], ["tls", "ok"], ["login", "ok"], ["query", "ok"],
    ]);
    expect(good.stages[0]!.detail).toBe(`1 certificate(s) from ${rds.caPath}`);

    await writeFirst(["orders", "nocert"]);
    expect((await rdsd(["reload"])).code).toBe(0);
    const bad = await rdsd(["test", "nocert", "--json"]);
    expect(bad.code).toBe(1);
    const report = JSON.parse(bad.stdout) as ProbeReport;
    expect(report.stages.map((s) => [s.name, s.status])).toEqual([
      ["ca", "failed"], ["credentials", "skipped"], ["bastion", "skipped"], ["tunnel", "skipped"], ["tls", "skipped"], ["login", "skipped"], ["query", "skipped"],
    ]);
    expect(report.stages[0]!.error!.message).toContain(`cannot read the CA file ${join(dir.path, "no-such-ca.pem")}`);

    const waited = await rdsd(["start", "--wait=10s", "--config", first]);
    expect(waited.code).toBe(1);
    expect(waited.stderr).toContain("not every target is ready: nocert is failed: cannot read the CA file");
    await writeFirst(["orders"]);
    expect((await rdsd(["reload"])).code).toBe(0);
  });

  it("ca, logs and doctor follow the running daemon's state dir and config, whatever this shell's settings", async () => {
    const s = await status();
    // Another state dir and no config in this shell: the commands still answer for the daemon that runs.
    const elsewhere = { RDSD_STATE_DIR: join(dir.path, "elsewhere"), RDSD_CONFIG: "" };
    const ca = await rdsd(["ca"], elsewhere);
    expect(ca.stdout).toBe(`${s.localCaPath}\n`);
    expect(s.localCaPath).toBe(join(dir.path, "state", "local-ca", "ca.pem"));
    const logs = await rdsd(["logs", "-n", "1000"], elsewhere);
    expect(logs.code, logs.stderr).toBe(0);
    expect(logs.stdout).toContain("configuration reloaded");
    const doctor = await rdsd(["doctor"], elsewhere);
    expect(doctor.stdout).toMatch(new RegExp(`config\\s+ok\\s+1 target\\(s\\) in ${first.replace(/[.]/g, "\\.")}`));
    expect(doctor.stdout).toMatch(new RegExp(`port orders 127\\.0\\.0\\.1:${ports.orders}\\s+ok\\s+in use by rdsd for this target`));
  });

  it("logs ends quietly on a closed pipe (`rdsd logs -f | head -1`), and -n 0 -f prints only new lines", async () => {
    const head = spawn(process.execPath, [RDSD, "logs", "-f", "-n", "1"], { env, stdio: ["ignore", "pipe", "pipe"] });
    let stderr = "";
    head.stderr!.on("data", (c: Buffer) => (stderr += c.toString()));
    const exited = once(head, "exit");
    await once(head.stdout!, "data");
    head.stdout!.destroy(); // what `head -1` does after its line
    // New lines make the follower write into the closed pipe.
    await expect.poll(async () => (await rdsd(["reload"]), head.exitCode !== null), { timeout: 20_000, interval: 300 }).toBe(true);
    const [code] = await exited;
    expect(stderr).toBe("");
    expect(code).toBe(0);

    const follower = spawn(process.execPath, [RDSD, "logs", "-f", "-n", "0"], { env, stdio: ["ignore", "pipe", "pipe"] });
    let seen = "";
    follower.stdout!.on("data", (c: Buffer) => (seen += c.toString()));
    try {
      await expect.poll(async () => (await rdsd(["reload"]), seen), { timeout: 20_000, interval: 300 }).toContain("configuration reloaded");
      expect(seen).not.toContain("rdsd is running"); // written when the daemon started, before the follower
    } finally {
      follower.kill("SIGINT");
      await once(follower, "exit");
    }
  });

  it("stop, then stop again: both exit 0", async () => {
    const stopped = await rdsd(["stop"]);
    expect(stopped.code).toBe(0);
    expect(stopped.stdout).toBe("rdsd stopped\n");
    const again = await rdsd(["stop"]);
    expect(again.code).toBe(0);
    expect(again.stdout).toBe("rdsd is not running\n");
  });

  it("doctor names what failed: an unreachable SSO portal, no credentials without the SDK's internals, and no Node support notice", async () => {
    // An SSO profile with a valid cached login whose portal cannot be reached (a region with no such host).
    const home = join(dir.path, "sso-home");
    const ssoRegion = "eu-nowhere-1";
    await mkdir(join(home, ".aws", "sso", "cache"), { recursive: true });
    await writeFile(join(home, ".aws", "config"), `[profile dev-sso]\nsso_session = corp\nsso_account_id = 111122223333\nsso_role_name = Dev\nregion = eu-west-2\n\n[sso-session corp]\nsso_start_url = https://corp.awsapps.com/start\nsso_region = ${ssoRegion}\nsso_registration_scopes = sso:account:access\n`);
    const cacheName = createHash("sha1").update("corp").digest("hex");
    await writeFile(join(home, ".aws", "sso", "cache", `${cacheName}.json`), JSON.stringify({ accessToken: "not-a-real-token", expiresAt: new Date(Date.now() + 3_600_000).toISOString(), region: ssoRegion, startUrl: "https://corp.awsapps.com/start" }));
    const ssoConfig = join(dir.path, "sso.yaml");
    const target = `targets:\n  orders:\n    host: ${HOST}\n    listen: "127.0.0.1:${ports.orders}"\n    user: app\n    tls: { ca: ${rds.caPath} }\n    bastion: { instanceId: i-0123456789abcdef0 }\n`;
    await writeFile(ssoConfig, `aws: { profile: dev-sso, region: eu-west-2 }\n${target}`);
    const noAws = Object.fromEntries(Object.entries(env).filter(([key]) => !key.startsWith("AWS_")));
    const closed = await freePort();
    const awsEnv = { ...noAws, HOME: home, AWS_CONFIG_FILE: join(home, ".aws", "config"), AWS_SHARED_CREDENTIALS_FILE: join(home, ".aws", "credentials"), AWS_EC2_METADATA_SERVICE_ENDPOINT: `http://127.0.0.1:${closed}` };
    const sso = await runCommand(process.execPath, [RDSD, "doctor", "--config", ssoConfig], { env: awsEnv, timeoutMs: 60_000 });
    expect(sso.code).toBe(1);
    const portal = `cannot reach AWS SSO (portal.sso.${ssoRegion}.amazonaws.com): check the network`;
    expect(sso.stdout).toMatch(new RegExp(`credentials dev-sso\\s+FAIL\\s+${portal.replace(/[().]/g, "\\$&")}`));
    expect(sso.stdout).toMatch(new RegExp(`bastion orders\\s+FAIL\\s+${portal.replace(/[().]/g, "\\$&")}`));
    expect(sso.stdout).not.toContain("DescribeInstanceInformation");

    // No credentials anywhere (IMDS tried and not there): the message says so, without the SDK's chain steps.
    const bare = join(dir.path, "bare.yaml");
    await writeFile(bare, target);
    const none = await runCommand(process.execPath, [RDSD, "doctor", "--config", bare], { env: { ...awsEnv, AWS_CONFIG_FILE: join(home, "none"), HOME: join(dir.path, "no-home") }, timeoutMs: 60_000 });
    expect(none.stdout).toMatch(/credentials[^\n]*FAIL\s+no AWS credentials found\b/);
    expect(none.stdout + none.stderr).not.toMatch(/AWS_EC2_METADATA_V1_DISABLED|checking config file next/);

    // The AWS SDK's notice that its future releases need Node 22 stays out of rdsd's output (Node 20 prints it).
    for (const run of [sso, none]) expect(run.stderr).not.toContain("NodeVersionSupportWarning");
    expect(sso.stderr).toBe("");
  });
});
