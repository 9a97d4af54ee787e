import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { DaemonStatus, TargetStatus } from "@rdsd/control";
import { startEmulator, type Emulator, type SessionInfo } from "@rdsd/ssm-emulator";
import { freePort, makeRdsLikeTls, relayServer, runCommand, startPostgres, tempDir, type PostgresServer, type RdsLikeTls, type TcpServer, type TempDir } from "@rdsd/testkit";
import { emulatorDaemonEnv } from "./emulator-env.js";

// Warm spares follow use, seen from outside: a real daemon with an eager native SSM target (the emulator) in front
// of a real PostgreSQL, with a relay before the database that counts every connection the bastion's agent makes.

const RDSD = fileURLToPath(new URL("../packages/cli/bin/rdsd.js", import.meta.url));
const HOST = "orders-dev.abc123xyz.eu-west-2.rds.amazonaws.com";
const BASTION = "i-0a1b2c3d4e5f60733";

let pgServer: PostgresServer;
let rds: RdsLikeTls;
let relay: TcpServer;
let dir: TempDir;
let emulator: Emulator;
let env: NodeJS.ProcessEnv;

beforeAll(async () => {
  rds = await makeRdsLikeTls(HOST);
  pgServer = await startPostgres({ tls: { certPem: rds.certPem, keyPem: rds.keyPem }, hba: ["hostssl all app 127.0.0.1/32 scram-sha-256"] });
  await pgServer.admin("CREATE ROLE app LOGIN PASSWORD 'app-secret'");
  relay = await relayServer(pgServer.port);
  emulator = await startEmulator({ instances: [{ instanceId: BASTION, tags: { Name: "db-bastion" } }], hostMap: [{ from: `${HOST}:5432`, to: `127.0.0.1:${relay.port}` }] });
  dir = await tempDir("rdsd-spares-");
  env = emulatorDaemonEnv(dir.path, emulator, { appPassword: "app-secret" });
});

afterAll(async () => {
  await emulator?.close();
  await relay?.close();
  await pgServer?.stop();
  await rds?.cleanup();
  await dir?.cleanup();
});

async function target(): Promise<TargetStatus> {
  const run = await runCommand(process.execPath, [RDSD, "status", "--json"], { env, timeoutMs: 60_000 });
  return (JSON.parse(run.stdout) as DaemonStatus).targets[0]!;
}

describe("warm spares follow use (daemon, native SSM tunnel)", () => {
  it("an unused eager target dials no database beyond its session's probe; a client starts a spare the next cold login uses; idleTimeout after the last client it is gone", async () => {
    const port = await freePort();
    const configPath = join(dir.path, "rdsd.yaml");
    await writeFile(
      configPath,
      `aws: { region: eu-west-2 }\ntargets:\n  orders:\n    host: ${HOST}\n    listen: "127.0.0.1:${port}"\n    user: app\n    database: postgres\n    auth: { password: { env: APP_PASSWORD } }\n    tls: { ca: ${rds.caPath} }\n    bastion: { instanceId: ${BASTION} }\n    tunnel: { driver: native, mode: eager }\n    pool: { idleTimeout: 2s }\n`,
    );
    const daemon: ChildProcess = spawn(process.execPath, [RDSD, "daemon", "--config", configPath], { env, stdio: ["ignore", "ignore", "pipe"] });
    let output = "";
    daemon.stderr!.on("data", (c: Buffer) => (output += c.toString()));
    const logins = () => [...output.matchAll(/client connected .*spare=(true|false)/g)].map((m) => m[1] === "true");
    try {
      await expect.poll(async () => (await target()).state, { timeout: 30_000 }).toBe("ready");
      // The session's one database dial (the new-session probe, before it is ready), and nothing for a spare:
      // by now (a status command later) the old daemon had dialed one as soon as the session was up.
      expect(emulator.sessions()).toHaveLength(1);
      expect(await target()).toMatchObject({ spares: 0, parked: 0, connections: 0 });
      expect(relay.connections).toHaveLength(1);

      // The first client logs in cold; from its arrival a spare is kept, for as long as a client is connected.
      const first = new pg.Client({ host: "127.0.0.1", port, user: "anyone", database: "postgres" });
      first.on("error", () => {}); // a failed test stops the daemon under it
      await first.connect();
      await expect.poll(logins).toEqual([false]);
      await expect.poll(async () => (await target()).spares, { timeout: 15_000 }).toBe(1);

      // A second client while the first holds its connection: a cold login, on the spare.
      const second = new pg.Client({ host: "127.0.0.1", port, user: "anyone", database: "postgres", application_name: "second" });
      second.on("error", () => {});
      await second.connect();
      expect((await second.query<{ n: number }>("SELECT 1 AS n")).rows[0]!.n).toBe(1);
      await expect.poll(logins).toEqual([false, true]);
      await second.end();
      await first.end();

      // idleTimeout (2 s) after the last client: the spare and the parked connections are closed, none replaced.
      await expect.poll(async () => await target(), { timeout: 15_000 }).toMatchObject({ spares: 0, parked: 0 });
      await expect.poll(() => relay.connections.filter((s) => !s.destroyed).length, { timeout: 10_000 }).toBe(0);
      expect(emulator.sessions()).toHaveLength(1);
      // Every database connection of the run, each accounted for: the session's probe, the first client's cold
      // login, the spare opened on its arrival (used by the second client), and that spare's replacement.
      expect(relay.connections).toHaveLength(4);
    } finally {
      if (daemon.exitCode === null && daemon.signalCode === null) {
        daemon.kill("SIGTERM");
        await once(daemon, "exit");
      }
    }
  }, 90_000);

  it("a lazy tunnel that closes for idleness inside the pool's idleTimeout takes its spare along and is not reopened by it", async () => {
    const port = await freePort();
    const configPath = join(dir.path, "lazy.yaml");
    // tunnel.idleTimeout (1 s) well inside pool.idleTimeout (5m default) and the 45 s spare refresh.
    await writeFile(
      configPath,
      `aws: { region: eu-west-2 }\ntargets:\n  orders:\n    host: ${HOST}\n    listen: "127.0.0.1:${port}"\n    user: app\n    database: postgres\n    auth: { password: { env: APP_PASSWORD } }\n    tls: { ca: ${rds.caPath} }\n    bastion: { instanceId: ${BASTION} }\n    tunnel: { driver: native, mode: lazy, idleTimeout: 1s }\n`,
    );
    const sessionsBefore = emulator.sessions().length;
    const daemon: ChildProcess = spawn(process.execPath, [RDSD, "daemon", "--config", configPath], { env, stdio: ["ignore", "ignore", "pipe"] });
    let output = "";
    daemon.stderr!.on("data", (c: Buffer) => (output += c.toString()));
    const logins = () => [...output.matchAll(/client connected .*spare=(true|false)/g)].map((m) => m[1] === "true");
    const started = () => emulator.sessions().length - sessionsBefore;
    try {
      await expect.poll(() => output.includes("rdsd is running"), { timeout: 30_000 }).toBe(true);
      expect(started()).toBe(0);
      const client = new pg.Client({ host: "127.0.0.1", port, user: "anyone", database: "postgres" });
      client.on("error", () => {});
      await client.connect();
      await expect.poll(async () => (await target()).spares, { timeout: 15_000 }).toBe(1);
      await client.end();

      // 1 s after the client left, the tunnel closes; its spare (and the parked connection) go with it.
      await expect.poll(async () => await target(), { timeout: 15_000 }).toMatchObject({ state: "idle", spares: 0, parked: 0 });
      expect(emulator.sessions({ active: true })).toEqual([]);
      // The spare did not reopen the tunnel: still the one session the client started.
      expect(started()).toBe(1);

      // The next client opens the tunnel again and logs in cold.
      const next = new pg.Client({ host: "127.0.0.1", port, user: "anyone", database: "postgres" });
      next.on("error", () => {});
      await next.connect();
      await next.end();
      await expect.poll(logins).toEqual([false, false]);
      expect(started()).toBe(2);
    } finally {
      if (daemon.exitCode === null && daemon.signalCode === null) {
        daemon.kill("SIGTERM");
        await once(daemon, "exit");
      }
    }
  }, 90_000);

  it("with 2 sessions, a spare opened while only one was up moves to the other once both are; the parked connection stays", async () => {
    const port = await freePort();
    const configPath = join(dir.path, "two-sessions.yaml");
    await writeFile(
      configPath,
      `aws: { region: eu-west-2 }\ntargets:\n  orders:\n    host: ${HOST}\n    listen: "127.0.0.1:${port}"\n    user: app\n    database: postgres\n    auth: { password: { env: APP_PASSWORD } }\n    tls: { ca: ${rds.caPath} }\n    bastion: { instanceId: ${BASTION} }\n    tunnel: { driver: native, mode: eager, sessions: 2 }\n`,
    );
    const earlier = new Set(emulator.sessions().map((s) => s.sessionId));
    const mine = () => emulator.sessions({ active: true }).filter((s) => !earlier.has(s.sessionId));
    const carrying = (sessionId: string) => emulator.session(sessionId)!.openDestinationConnections;
    const daemon: ChildProcess = spawn(process.execPath, [RDSD, "daemon", "--config", configPath], { env, stdio: ["ignore", "ignore", "pipe"] });
    try {
      await expect.poll(async () => (await target()).state, { timeout: 30_000 }).toBe("ready");
      expect(mine()).toHaveLength(2);
      // One session ends, and its replacement's StartSession is held: a client comes while only one is up.
      emulator.setFaults({ instanceId: BASTION }, { startSessionDelayMs: 8_000 });
      const [survivor, ended] = mine() as [SessionInfo, SessionInfo];
      emulator.closeSession(ended.sessionId, "idle-timeout");
      await expect.poll(async () => (await target()).state, { timeout: 10_000 }).toBe("degraded");
      const client = new pg.Client({ host: "127.0.0.1", port, user: "anyone", database: "postgres" });
      client.on("error", () => {});
      await client.connect();
      await expect.poll(async () => (await target()).spares, { timeout: 15_000 }).toBe(1);
      await client.end();
      await expect.poll(async () => (await target()).parked, { timeout: 15_000 }).toBe(1);
      // Both the parked connection and the spare on the one session there is.
      expect(carrying(survivor.sessionId)).toBe(2);
      emulator.setFaults({ instanceId: BASTION }, null);

      await expect.poll(async () => (await target()).state, { timeout: 30_000 }).toBe("ready");
      const replacement = mine().find((s) => s.sessionId !== survivor.sessionId)!;
      // The spare was reopened and went to the session carrying nothing: the next two clients (the parked
      // connection's and the spare's) would each have a session's bandwidth.
      await expect.poll(() => [carrying(survivor.sessionId), carrying(replacement.sessionId)], { timeout: 15_000 }).toEqual([1, 1]);
      expect(await target()).toMatchObject({ spares: 1, parked: 1 });
    } finally {
      emulator.setFaults({ instanceId: BASTION }, null);
      if (daemon.exitCode === null && daemon.signalCode === null) {
        daemon.kill("SIGTERM");
        await once(daemon, "exit");
      }
    }
  }, 120_000);
});
