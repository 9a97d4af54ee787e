import { fileURLToPath } from "node:url";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort } from "@rdsd/testkit";
import { childrenOf, daemonLogs, DB_PASSWORD, eventually, findSecrets, recordSsmTokens, startDaemon, startWorld, status, targetYaml, writeConfig, type DaemonProcess, type World } from "./harness.js";

// The plugin driver's child process killed under a real daemon. The official session-manager-plugin is not on
// PATH here, so tunnel.pluginPath points at the tunnel package's stand-in (same command line, stdout lines and
// signal handling; it forwards its port straight to PostgreSQL instead of speaking to the agent).

const STAND_IN = fileURLToPath(new URL("../../packages/tunnel/test/fixtures/fake-session-manager-plugin.mjs", import.meta.url));

let world: World;
let daemon: DaemonProcess | undefined;
let port: number;
let recorder: Awaited<ReturnType<typeof recordSsmTokens>>;
const clientErrors: string[] = [];

beforeAll(async () => {
  world = await startWorld();
  recorder = await recordSsmTokens(world.emulator.endpoint);
  world.env = { ...world.env, AWS_ENDPOINT_URL_SSM: recorder.endpoint, FAKE_PLUGIN_FORWARD: `127.0.0.1:${world.pg.port}` };
  port = await freePort();
  await writeConfig(world, targetYaml("orders", port).replace("tunnel: { driver: native }", `tunnel: { driver: plugin, pluginPath: ${STAND_IN} }`));
  daemon = await startDaemon(world);
  await eventually("the target ready", async () => (await status(world)).targets[0]!.state === "ready", 20_000);
}, 60_000);

afterAll(async () => {
  await daemon?.kill("SIGKILL");
  for (const pid of daemon ? await childrenOf(daemon.pid) : []) process.kill(pid, "SIGKILL");
  await recorder?.close();
  await world?.close();
});

async function query(client: pg.Client): Promise<number> {
  return (await client.query<{ n: number }>("SELECT 7 AS n")).rows[0]!.n;
}

function newClient(): pg.Client {
  const client = new pg.Client({ host: "127.0.0.1", port, user: "me", database: "postgres", connectionTimeoutMillis: 20_000 });
  client.on("error", () => {});
  return client;
}

describe("the plugin child killed under a real daemon", () => {
  it("SIGKILL of the plugin: the client on it gets an error, status shows a replacement within seconds, new clients are served, no restart", async () => {
    const client = newClient();
    await client.connect();
    expect(await query(client)).toBe(7);
    const plugins = await childrenOf(daemon!.pid);
    expect(plugins).toHaveLength(1);
    const [before] = (await status(world)).targets[0]!.sessionIds;

    const killed = Date.now();
    process.kill(plugins[0]!, "SIGKILL");
    const inFlight = await query(client).then(
      () => "served",
      (err: Error) => (clientErrors.push(String(err)), `failed (${err.message})`),
    );
    await eventually("a new session in status", async () => {
      const { sessionIds } = (await status(world)).targets[0]!;
      return sessionIds.length === 1 && sessionIds[0] !== before;
    }, 20_000, 100);
    const replacedMs = Date.now() - killed;
    const fresh = newClient();
    await fresh.connect();
    expect(await query(fresh)).toBe(7);
    await fresh.end();
    const after = await childrenOf(daemon!.pid);
    console.log(`plugin SIGKILL: the client on it ${inFlight}; new session in status after ${replacedMs} ms; plugin pids ${plugins} -> ${after}`);
    expect(inFlight).toMatch(/^failed/);
    expect(replacedMs).toBeLessThan(10_000);
    expect(after).toHaveLength(1);
    expect(after[0]).not.toBe(plugins[0]);
    expect(world.emulator.session(before!)?.state).toBe("Terminated"); // the dead plugin's session is ended on AWS
    expect(daemon!.child.exitCode).toBeNull();
    await client.end().catch(() => {});
  }, 60_000);

  it("nothing produced holds the database password, the AWS secret key or a session token", async () => {
    await daemon!.kill();
    daemon = undefined;
    const texts: Record<string, string> = { "daemon log": await daemonLogs(world), "client errors": clientErrors.join("\n") };
    world.produced.forEach((t, i) => (texts[`output ${i}`] = t));
    const secrets: Record<string, string> = { "database password": DB_PASSWORD, "AWS secret key": world.emulator.credentials.secretAccessKey };
    recorder.tokens.forEach((t, i) => (secrets[`session token ${i}`] = t));
    expect(recorder.tokens.length).toBeGreaterThan(0);
    expect(findSecrets(texts, secrets)).toEqual([]);
  });
});
