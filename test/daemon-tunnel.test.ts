import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { DaemonStatus, ProbeReport } from "@rdsd/control";
import type { DoctorCheck } from "@rdsd/daemon";
import { startEmulator, type Emulator } from "@rdsd/ssm-emulator";
import { childrenOf, freePort, makeRdsLikeTls, runCommand, startPostgres, tempDir, type PostgresServer, type RdsLikeTls, type TempDir } from "@rdsd/testkit";
import { emulatorDaemonEnv } from "./emulator-env.js";

// A real daemon process with the native SSM tunnel against the emulator (running in this test process,
// so its sessions can be inspected): restart replaces the session, SIGTERM terminates it on "AWS".

const RDSD = fileURLToPath(new URL("../packages/cli/bin/rdsd.js", import.meta.url));
const HOST = "orders-dev.abc123xyz.eu-west-2.rds.amazonaws.com";
const BASTION = "i-0a1b2c3d4e5f60718";

let pgServer: PostgresServer;
let rds: RdsLikeTls;
let dir: TempDir;
let emulator: Emulator;
let env: NodeJS.ProcessEnv;
let configPath: string;
let port: number;

beforeAll(async () => {
  rds = await makeRdsLikeTls(HOST);
  pgServer = await startPostgres({ tls: { certPem: rds.certPem, keyPem: rds.keyPem }, hba: ["hostssl all app 127.0.0.1/32 scram-sha-256"] });
  await pgServer.admin("CREATE ROLE app LOGIN PASSWORD 'app-secret'");
  emulator = await startEmulator({ instances: [{ instanceId: BASTION, tags: { Name: "db-bastion" } }], hostMap: [{ from: `${HOST}:5432`, to: `127.0.0.1:${pgServer.port}` }] });
  dir = await tempDir("rdsd-tunnel-");
  port = await freePort();
  configPath = join(dir.path, "rdsd.yaml");
  await writeFile(
    configPath,
    `aws: { region: eu-west-2 }\ntargets:\n  orders:\n    host: ${HOST}\n    listen: "127.0.0.1:${port}"\n    user: app\n    database: postgres\n    auth: { password: { env: APP_PASSWORD } }\n    tls: { ca: ${rds.caPath} }\n    bastion: { tag: "Name=db-bastion" }\n    tunnel: { driver: native }\n`,
  );
  env = emulatorDaemonEnv(dir.path, emulator, { appPassword: "app-secret" });
});

afterAll(async () => {
  await emulator?.close();
  await pgServer?.stop();
  await rds?.cleanup();
  await dir?.cleanup();
});

function rdsd(args: string[]) {
  return runCommand(process.execPath, [RDSD, ...args], { env, timeoutMs: 60_000 });
}

async function status(): Promise<DaemonStatus> {
  return JSON.parse((await rdsd(["status", "--json"])).stdout) as DaemonStatus;
}

describe("daemon with the native SSM tunnel (emulator)", () => {
  it("serves through a session, restarts it, checks bastion and credentials, and terminates it on SIGTERM", async () => {
    const daemon: ChildProcess = spawn(process.execPath, [RDSD, "daemon", "--config", configPath], { env, stdio: ["ignore", "ignore", "pipe"] });
    let output = "";
    const exited = once(daemon, "exit");
    try {
      await new Promise<void>((resolve, reject) => {
        daemon.stderr!.on("data", (c: Buffer) => ((output += c.toString()), output.includes("rdsd is running") && resolve()));
        daemon.once("exit", (code) => reject(new Error(`daemon exited with ${code}: ${output}`)));
      });
      const client = new pg.Client({ host: "127.0.0.1", port, user: "anyone", database: "postgres" });
      await client.connect();
      expect((await client.query<{ u: string }>("SELECT current_user AS u")).rows[0]!.u).toBe("app");
      await client.end();

      const first = (await status()).targets[0]!;
      expect(first).toMatchObject({ state: "ready", driver: "native", lastError: null });
      expect(first.sessionIds).toHaveLength(1);
      expect(emulator.sessions({ active: true }).map((s) => s.sessionId)).toEqual(first.sessionIds);

      const probe = JSON.parse((await rdsd(["test", "orders", "--json"])).stdout) as ProbeReport;
      expect(probe.ok, JSON.stringify(probe.stages)).toBe(true);
      expect(probe.stages.find((s) => s.name === "bastion")).toMatchObject({ status: "ok", detail: `${BASTION} online (tag Name=db-bastion, agent ${emulator.instances()[0]!.agentVersion})` });

      const doctor = await rdsd(["doctor", "--config", configPath, "--json"]);
      const checks = (JSON.parse(doctor.stdout) as { checks: DoctorCheck[] }).checks;
      const byName = (name: string) => checks.find((c) => c.name === name);
      expect(doctor.code, doctor.stdout).toBe(0);
      expect(byName("credentials (default chain)")).toMatchObject({ status: "ok", detail: expect.stringContaining(`access key ...${emulator.credentials.accessKeyId.slice(-4)}`) });
      expect(byName("region orders")).toMatchObject({ status: "ok", detail: "eu-west-2 (from explicit)" });
      expect(byName("bastion orders")).toMatchObject({ status: "ok" });
      expect(byName(`port orders 127.0.0.1:${port}`)).toMatchObject({ status: "ok", detail: "in use by rdsd for this target" });

      expect((await rdsd(["restart", "orders"])).code).toBe(0);
      await expect.poll(async () => (await status()).targets[0]!.sessionIds, { timeout: 15_000 }).not.toEqual(first.sessionIds);
      expect(emulator.session(first.sessionIds[0]!)!.state).toBe("Terminated");

      const children = await childrenOf(daemon.pid!);
      daemon.kill("SIGTERM");
      const [code] = await exited;
      expect(code).toBe(0);
      expect(emulator.sessions({ active: true })).toEqual([]);
      for (const child of children) expect(await readFile(`/proc/${child}/stat`, "utf8").catch(() => "gone")).toBe("gone");
    } finally {
      if (daemon.exitCode === null) daemon.kill("SIGKILL");
    }
  }, 60_000);

  it("an SSM agent too old to multiplex: status (state degraded), test and doctor warn with the fix", async () => {
    const OLD_BASTION = "i-0a1b2c3d4e5f60799";
    emulator.addInstance({ instanceId: OLD_BASTION, tags: { Name: "old-bastion" }, agentVersion: "3.0.100.0" });
    const legacyPort = await freePort();
    const legacyConfig = join(dir.path, "legacy.yaml");
    await writeFile(
      legacyConfig,
      `aws: { region: eu-west-2 }\ntargets:\n  legacy:\n    host: ${HOST}\n    listen: "127.0.0.1:${legacyPort}"\n    user: app\n    database: postgres\n    auth: { password: { env: APP_PASSWORD } }\n    tls: { ca: ${rds.caPath} }\n    bastion: { instanceId: ${OLD_BASTION} }\n    tunnel: { driver: native }\n`,
    );
    const fix = `update the SSM agent on ${OLD_BASTION}`;
    const daemon: ChildProcess = spawn(process.execPath, [RDSD, "daemon", "--config", legacyConfig], { env, stdio: ["ignore", "ignore", "pipe"] });
    let output = "";
    try {
      await new Promise<void>((resolve, reject) => {
        daemon.stderr!.on("data", (c: Buffer) => ((output += c.toString()), output.includes("rdsd is running") && resolve()));
        daemon.once("exit", (code) => reject(new Error(`daemon exited with ${code}: ${output}`)));
      });
      await expect.poll(async () => (await status()).targets[0]!.state, { timeout: 15_000 }).toBe("degraded");
      const legacy = (await status()).targets[0]!;
      expect(legacy.warnings).toHaveLength(1);
      expect(legacy.warnings[0]!.message).toContain(`the SSM agent on ${OLD_BASTION} is version 3.0.100.0, too old to multiplex`);
      expect(legacy.warnings[0]!.fix).toContain(fix);
      // The warning is the instance's: it stays while a single-connection session is replaced.
      const warnedWithFix = (text: string) => text.includes(`legacy: warning: the SSM agent on ${OLD_BASTION} is version 3.0.100.0`) && text.includes(`fix: ${fix}`);
      await expect.poll(async () => warnedWithFix((await rdsd(["status"])).stdout), { timeout: 15_000 }).toBe(true);
      // Idle, it spent no session: no probe, no warm spare on a single-connection session (one StartSession).
      expect(emulator.sessions().filter((s) => s.instanceId === OLD_BASTION)).toHaveLength(1);

      // It works (one connection per session), and says so.
      const client = new pg.Client({ host: "127.0.0.1", port: legacyPort, user: "anyone", database: "postgres" });
      await client.connect();
      expect((await client.query<{ n: number }>("SELECT 1 AS n")).rows[0]!.n).toBe(1);
      await client.end();
      const probe = JSON.parse((await rdsd(["test", "legacy", "--json"])).stdout) as ProbeReport;
      expect(probe.ok, JSON.stringify(probe.stages)).toBe(true);
      expect(probe.warnings.map((w) => w.fix)).toEqual([expect.stringContaining(fix)]);
      const testText = (await rdsd(["test", "legacy"])).stdout;
      expect(testText).toContain(`legacy: warning: the SSM agent on ${OLD_BASTION}`);
      expect(testText).toContain(fix);

      const doctor = await rdsd(["doctor", "--config", legacyConfig, "--json"]);
      const check = (JSON.parse(doctor.stdout) as { checks: DoctorCheck[] }).checks.find((c) => c.name === "bastion legacy");
      expect(check).toMatchObject({ status: "warn", detail: expect.stringContaining("version 3.0.100.0, too old to multiplex"), fix: expect.stringContaining(fix) });
      expect((await rdsd(["doctor", "--config", legacyConfig])).stdout).toContain(`bastion legacy: ${fix}`);
    } finally {
      if (daemon.exitCode === null && daemon.signalCode === null) {
        daemon.kill("SIGTERM");
        await once(daemon, "exit");
      }
    }
  }, 90_000);
});
