import { readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { ProxyError } from "@rdsd/proxy";
import { startEmulator } from "@rdsd/ssm-emulator";
import type { Emulator } from "@rdsd/ssm-emulator";
import { tempDir } from "@rdsd/testkit";
import type { TcpServer, TempDir } from "@rdsd/testkit";
import { PluginDriver } from "../src/plugin-driver.js";
import type { SsmApi } from "../src/ssm-api.js";
import { apiFor, RDS_HOST, sslAnsweringEchoServer } from "./helpers.js";
import { target, tunnelFor, waitForState } from "./tunnel-helpers.js";

// The official plugin is not on this machine: a stand-in with its command line, output and signals tests the
// driver's process handling. (The end-to-end test with the real plugin runs when it is on PATH: e2e-proxy.test.ts.)
const FAKE_PLUGIN = fileURLToPath(new URL("./fixtures/fake-session-manager-plugin.mjs", import.meta.url));

let emulator: Emulator;
let db: TcpServer;
let api: SsmApi;
let dir: TempDir;
let logFile: string;

beforeAll(async () => {
  db = await sslAnsweringEchoServer();
  emulator = await startEmulator({ pacing: false, hostMap: [`${RDS_HOST}=127.0.0.1:${db.port}`] });
  api = apiFor(emulator);
  dir = await tempDir("rdsd-plugin-test-");
});
afterEach(() => {
  delete process.env["FAKE_PLUGIN_MODE"];
  expect(emulator.sessions({ active: true })).toEqual([]);
});
afterAll(async () => {
  api.destroy();
  await emulator.close();
  await db.close();
  await dir.cleanup();
});

function logEntries(): Record<string, unknown>[] {
  return readFileSync(logFile, "utf8").trim().split("\n").map((l) => JSON.parse(l) as Record<string, unknown>);
}

function setup(mode: "forward" | "zombie", name: string): void {
  logFile = join(dir.path, `${name}.log`);
  process.env["FAKE_PLUGIN_LOG"] = logFile;
  process.env["FAKE_PLUGIN_MODE"] = mode;
  process.env["FAKE_PLUGIN_FORWARD"] = `127.0.0.1:${db.port}`;
}

describe("plugin driver", () => {
  it("runs the plugin as the AWS CLI does (token in an env var), carries bytes, stops it with SIGINT and terminates the session", async () => {
    setup("forward", "forward");
    const driver = new PluginDriver({ api, pluginPath: FAKE_PLUGIN, host: RDS_HOST, port: 5432, profile: "dev", endpoint: emulator.endpoint });
    const instanceId = emulator.instances()[0]!.instanceId;
    const session = await driver.open(instanceId, AbortSignal.timeout(10_000));
    const [start] = logEntries();
    expect(start).toMatchObject({ event: "start", tokenFromEnv: true, region: "eu-west-2", operation: "StartSession", profile: "dev", endpoint: emulator.endpoint, target: instanceId });
    const token = (start!["argv"] as string[])[0]!;
    expect(token).toMatch(/^AWS_SSM_START_SESSION_RESPONSE_/);
    const stream = await session.openStream();
    const echoed = new Promise<string>((resolve) => stream.once("data", (b: Buffer) => resolve(b.toString())));
    stream.write("hello, database");
    expect(await echoed).toBe("hello, database");
    await session.close();
    expect(logEntries().map((e) => e["event"])).toEqual(["start", "SIGINT"]);
    expect(emulator.session(session.id)!.state).toBe("Terminated");
  });

  it("finds the zombie state (port open, nothing carried) by probing, and never hands it out", async () => {
    setup("zombie", "zombie");
    const t = tunnelFor(emulator, target({ tunnel: { driver: "plugin", pluginPath: FAKE_PLUGIN } }), { supervisor: { probeTimeoutMs: 300, backoff: { initialMs: 50, maxMs: 200 } } });
    t.start();
    const failed = await waitForState(t, "reconnecting");
    expect(failed.lastError?.message).toMatch(/did not answer a probe/);
    await t.stop();
    // Every plugin started was stopped with SIGINT.
    const events = logEntries();
    expect(events.filter((e) => e["event"] === "SIGINT")).toHaveLength(events.filter((e) => e["event"] === "start").length);
  });

  it("a missing plugin is a clear error before any session is started", async () => {
    const driver = new PluginDriver({ api, pluginPath: join(dir.path, "no-such-plugin"), host: RDS_HOST, port: 5432 });
    const before = emulator.sessions().length;
    const err = await driver.open(emulator.instances()[0]!.instanceId, AbortSignal.timeout(5_000)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ProxyError);
    expect((err as ProxyError).message).toContain("session-manager-plugin not found");
    expect((err as ProxyError).fix).toContain("tunnel.driver: native");
    expect(emulator.sessions()).toHaveLength(before);
  });
});
