import { spawn, spawnSync } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { once } from "node:events";
import { connect } from "node:net";
import { StartSessionCommand, TerminateSessionCommand } from "@aws-sdk/client-ssm";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { echoServer, readBytes, seededBytes, startPostgres, tempDir } from "@rdsd/testkit";
import type { PostgresServer, TempDir } from "@rdsd/testkit";
import { clientSupportsKeepAliveOff, compareVersions } from "@rdsd/ssm-protocol";
import { startEmulator } from "./emulator.js";
import { CloseReasons } from "./faults.js";
import type { Emulator } from "./emulator.js";
import { sdkClient } from "./testing/helpers.js";

/**
 * Conformance with the official client (aws/session-manager-plugin), run the way the AWS CLI runs it.
 * Needs `session-manager-plugin` on PATH (or SESSION_MANAGER_PLUGIN=/path); otherwise skipped, saying why.
 */
function findPlugin(): string | undefined {
  const explicit = process.env["SESSION_MANAGER_PLUGIN"];
  if (explicit) return explicit;
  const found = spawnSync("sh", ["-c", "command -v session-manager-plugin"], { encoding: "utf8" });
  return found.status === 0 ? found.stdout.trim() : undefined;
}

const plugin = findPlugin();
/** `session-manager-plugin --version`, e.g. "1.2.764.0". */
const pluginVersion = plugin ? spawnSync(plugin, ["--version"], { encoding: "utf8" }).stdout.trim() : "";
/** The AWS CLI passes the response through an environment variable to plugins above 1.2.497.0. */
const usesEnvResponse = plugin !== undefined && compareVersions(pluginVersion, "1.2.497.0") === 1;
const SKIP_REASON = "skipped: session-manager-plugin is not on PATH (install the official plugin or set SESSION_MANAGER_PLUGIN to run it)";
if (!plugin) console.warn(`plugin conformance ${SKIP_REASON}`);

const RDS = "orders-dev.abc123xyz.eu-west-2.rds.amazonaws.com";
const RDS_ECHO = "echo-dev.abc123xyz.eu-west-2.rds.amazonaws.com";
const PASSWORD = "conformance-pass-1";

interface RunningPlugin {
  child: ChildProcess;
  sessionId: string;
  localPort: number;
  stdout: () => string;
}

/** Starts a session through the API and runs the plugin with the AWS CLI's argv contract. */
async function runPlugin(emulator: Emulator, home: string, host: string, portNumber: string): Promise<RunningPlugin> {
  const request = {
    Target: emulator.instances()[0]!.instanceId,
    DocumentName: "AWS-StartPortForwardingSessionToRemoteHost",
    Parameters: { host: [host], portNumber: [portNumber], localPortNumber: ["0"] },
  };
  const response = await sdkClient(emulator).send(new StartSessionCommand(request));
  const responseJson = JSON.stringify({ SessionId: response.SessionId, TokenValue: response.TokenValue, StreamUrl: response.StreamUrl });
  const responseArg = usesEnvResponse ? "AWS_SSM_START_SESSION_RESPONSE" : responseJson;
  const child = spawn(plugin!, [responseArg, emulator.region, "StartSession", "", JSON.stringify(request), emulator.endpoint], {
    env: {
      ...(usesEnvResponse ? { AWS_SSM_START_SESSION_RESPONSE: responseJson } : {}),
      PATH: process.env["PATH"] ?? "/usr/bin:/bin",
      HOME: home,
      AWS_ACCESS_KEY_ID: emulator.credentials.accessKeyId,
      AWS_SECRET_ACCESS_KEY: emulator.credentials.secretAccessKey,
      AWS_REGION: emulator.region,
      AWS_EC2_METADATA_DISABLED: "true",
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  child.stdout!.setEncoding("utf8");
  child.stderr!.resume();
  const opened = new Promise<number>((resolve, reject) => {
    child.stdout!.on("data", (text: string) => {
      out += text;
      const m = /Port (\d+) opened for sessionId/.exec(out);
      if (m) resolve(Number(m[1]));
    });
    child.once("exit", (code) => reject(new Error(`plugin exited (${code}) before opening its port: ${out}`)));
  });
  const localPort = await opened;
  return { child, sessionId: response.SessionId!, localPort, stdout: () => out };
}

/** Resolves once the plugin's stdout contains `text`. */
function stdoutContains(p: RunningPlugin, text: string): Promise<void> {
  if (p.stdout().includes(text)) return Promise.resolve();
  return new Promise((resolve) => {
    const onData = () => {
      if (!p.stdout().includes(text)) return;
      p.child.stdout!.off("data", onData);
      resolve();
    };
    p.child.stdout!.on("data", onData);
  });
}

/** SIGINT is how a supervisor stops the plugin so that it tells the agent. */
async function stopPlugin(p: RunningPlugin): Promise<void> {
  if (p.child.exitCode !== null) return;
  const exited = once(p.child, "exit");
  p.child.kill("SIGINT");
  await exited;
}

async function echoThrough(port: number, data: Buffer): Promise<boolean> {
  const socket = connect({ host: "127.0.0.1", port });
  await once(socket, "connect");
  const back = readBytes(socket, data.length);
  socket.write(data);
  const ok = (await back).equals(data);
  socket.destroy();
  return ok;
}

async function postgresRoundTrips(port: number): Promise<void> {
  const client = new pg.Client({ host: "127.0.0.1", port, user: "conformance", password: PASSWORD, database: "postgres" });
  await client.connect();
  try {
    const big = await client.query("SELECT repeat('x', 1048576) AS s");
    expect((big.rows[0] as { s: string }).s.length).toBe(1048576);
    const upload = "y".repeat(512 * 1024);
    const echoed = await client.query("SELECT length($1::text) AS n", [upload]);
    expect(Number((echoed.rows[0] as { n: string }).n)).toBe(upload.length);
    const rows = await client.query("SELECT g FROM generate_series(1, 20000) g");
    expect(rows.rowCount).toBe(20000);
  } finally {
    await client.end();
  }
}

describe.skipIf(!plugin)(`official session-manager-plugin against the emulator${plugin ? "" : ` (${SKIP_REASON})`}`, () => {
  let postgres: PostgresServer;
  let echo: Awaited<ReturnType<typeof echoServer>>;
  let home: TempDir;

  beforeAll(async () => {
    home = await tempDir("rdsd-plugin-home-");
    echo = await echoServer();
    postgres = await startPostgres();
    await postgres.admin(`CREATE ROLE conformance LOGIN PASSWORD '${PASSWORD}'`);
  });
  afterAll(async () => {
    await postgres?.stop();
    await echo?.close();
    await home?.cleanup();
  });

  for (const mode of ["multiplexed", "single"] as const) {
    it(`moves a real Postgres session and several MB in ${mode} mode`, { timeout: 120_000 }, async () => {
      const emulator = await startEmulator({
        pacing: false,
        agentVersion: mode === "single" ? "3.0.196.0" : "3.3.1802.0",
        hostMap: [`${RDS}=127.0.0.1:${postgres.port}`, `${RDS_ECHO}=127.0.0.1:${echo.port}`],
      });
      const running: RunningPlugin[] = [];
      try {
        const pgPlugin = await runPlugin(emulator, home.path, RDS, "5432");
        running.push(pgPlugin);
        expect(pgPlugin.stdout()).toContain(`Starting session with SessionId: ${pgPlugin.sessionId}`);
        const pgInfo = emulator.session(pgPlugin.sessionId)!;
        expect([pgInfo.mode, pgInfo.clientVersion]).toEqual([mode, pluginVersion]);
        if (mode === "multiplexed") expect(pgInfo.smuxKeepAlive).toBe(!clientSupportsKeepAliveOff(pluginVersion));
        await postgresRoundTrips(pgPlugin.localPort);
        if (mode === "multiplexed") {
          // Several connections at once over one session.
          await Promise.all([0, 1, 2].map(() => postgresRoundTrips(pgPlugin.localPort)));
        } else {
          // One connection after another: DisconnectToPort, then a redial.
          await postgresRoundTrips(pgPlugin.localPort);
        }

        const echoPlugin = await runPlugin(emulator, home.path, RDS_ECHO, "7");
        running.push(echoPlugin);
        const size = 3 << 20;
        if (mode === "multiplexed") {
          const results = await Promise.all([1, 2, 3].map((seed) => echoThrough(echoPlugin.localPort, seededBytes(size / 3, seed))));
          expect(results).toEqual([true, true, true]);
        } else {
          expect(await echoThrough(echoPlugin.localPort, seededBytes(size, 4))).toBe(true);
        }
        const info = emulator.session(echoPlugin.sessionId)!;
        expect(info.bytesFromClient).toBeGreaterThanOrEqual(size);
        expect(info.bytesToClient).toBeGreaterThanOrEqual(size);
      } finally {
        for (const p of running) await stopPlugin(p);
        // SIGINT makes the plugin send TerminateSession: nothing is left open.
        await emulator.waitForSession((s) => s.state === "Terminated" && emulator.sessions({ active: true }).length === 0, 10_000).catch(() => undefined);
        const left = emulator.sessions({ active: true });
        await emulator.close();
        expect(left).toEqual([]);
      }
    });
  }

  it("shows each fault the way the real service would", { timeout: 120_000 }, async () => {
    const emulator = await startEmulator({ pacing: false, hostMap: [`${RDS_ECHO}=127.0.0.1:${echo.port}`] });
    const running: RunningPlugin[] = [];
    try {
      // A dropped websocket: the plugin calls ResumeSession (signed by its own SDK) and reconnects with the same ClientId.
      const resumed = await runPlugin(emulator, home.path, RDS_ECHO, "7");
      running.push(resumed);
      const socket = connect({ host: "127.0.0.1", port: resumed.localPort });
      await once(socket, "connect");
      const first = readBytes(socket, 4);
      socket.write("ping");
      expect((await first).toString()).toBe("ping");
      expect(emulator.dropWebSocket(resumed.sessionId)).toBe(true);
      await emulator.waitForSession((s) => s.sessionId === resumed.sessionId && s.connections === 2 && s.state === "Connected", 20_000);
      const second = readBytes(socket, 4);
      socket.write("pong");
      expect((await second).toString()).toBe("pong");
      socket.destroy();

      // channel_closed with a reason: the plugin prints it and exits.
      const exited = once(resumed.child, "exit");
      emulator.closeSession(resumed.sessionId, "idle-timeout");
      await exited;
      expect(resumed.stdout()).toContain(`SessionId: ${resumed.sessionId} : ${CloseReasons["idle-timeout"]}`);

      // The destination refuses: ConnectToPortError.
      const refused = await runPlugin(emulator, home.path, "nowhere.abc123xyz.eu-west-2.rds.amazonaws.com", "5432");
      running.push(refused);
      const probe = connect({ host: "127.0.0.1", port: refused.localPort });
      probe.on("error", () => {});
      probe.resume();
      await once(probe, "close");
      await stdoutContains(refused, "Connection to destination port failed, check SSM Agent logs.");

      // TerminateSession through the API ends the plugin.
      const ended = once(refused.child, "exit");
      await sdkClient(emulator).send(new TerminateSessionCommand({ SessionId: refused.sessionId }));
      await ended;
      expect(refused.stdout()).toContain(`Exiting session with sessionId: ${refused.sessionId}`);
    } finally {
      for (const p of running) await stopPlugin(p);
      await emulator.close();
    }
  });
});
