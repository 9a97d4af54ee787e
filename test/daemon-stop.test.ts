import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { createCertificateAuthority } from "@rdsd/certs";
import { startEmulator, type Emulator } from "@rdsd/ssm-emulator";
import { freePort, tempDir, type TempDir } from "@rdsd/testkit";
import { startDaemon as startRunningDaemon, type RunningDaemon } from "./accounts-fixture.js";
import { emulatorDaemonEnv } from "./emulator-env.js";

// A real daemon process whose target's first SSM session never finishes opening (the emulator holds StartSession,
// answers it and then holds the data channel's websocket, or opens it and never starts the handshake): SIGTERM must still stop it promptly, abandoning the opening.
// The bound is each test's timeout; the daemon's own open and handshake timeouts (30 s, 15 s) are longer than it.

const HOST = "orders-dev.abc123xyz.eu-west-2.rds.amazonaws.com";
const SLOW_API_BASTION = "i-0a1b2c3d4e5f60711";
const SILENT_AGENT_BASTION = "i-0a1b2c3d4e5f60722";
const SLOW_CHANNEL_BASTION = "i-0a1b2c3d4e5f60733";

let dir: TempDir;
let emulator: Emulator;
let env: NodeJS.ProcessEnv;
let caPath: string;
const logWaiters: { match: string; resolve: () => void }[] = [];

/** Resolves at the emulator's next log line containing `match`. */
function emulatorLogs(match: string): Promise<void> {
  return new Promise((resolve) => logWaiters.push({ match, resolve }));
}

beforeAll(async () => {
  dir = await tempDir("rdsd-stop-");
  emulator = await startEmulator({
    instances: [{ instanceId: SLOW_API_BASTION }, { instanceId: SILENT_AGENT_BASTION }, { instanceId: SLOW_CHANNEL_BASTION }],
    // The agent would end an unfinished handshake by itself after this; longer than any test here.
    handshakeTimeoutMs: 120_000,
    log: (line) => {
      for (const w of logWaiters) if (line.includes(w.match)) w.resolve();
    },
  });
  emulator.setFaults({ instanceId: SLOW_API_BASTION }, { startSessionDelayMs: 60_000 });
  emulator.setFaults({ instanceId: SILENT_AGENT_BASTION }, { blackHole: true });
  emulator.setFaults({ instanceId: SLOW_CHANNEL_BASTION }, { channelAcceptDelayMs: 60_000 });
  const ca = await createCertificateAuthority({ commonName: "rdsd stop test RDS CA" });
  caPath = join(dir.path, "rds-ca.pem");
  await writeFile(caPath, ca.certPem);
  env = emulatorDaemonEnv(dir.path, emulator, { appPassword: "app-secret" });
});

const daemons: RunningDaemon[] = [];
/** A daemon that a timed-out test leaves running is killed before the next test. */
async function startDaemon(configPath: string, daemonEnv: NodeJS.ProcessEnv): Promise<RunningDaemon> {
  const daemon = await startRunningDaemon(configPath, daemonEnv);
  daemons.push(daemon);
  return daemon;
}

afterEach(() => {
  for (const d of daemons.splice(0)) if (d.process.exitCode === null && d.process.signalCode === null) d.process.kill("SIGKILL");
});

afterAll(async () => {
  await emulator?.close();
  await dir?.cleanup();
});

async function configFor(name: string, bastion: string): Promise<string> {
  const path = join(dir.path, `${name}.yaml`);
  await writeFile(
    path,
    `aws: { region: eu-west-2 }\ntargets:\n  ${name}:\n    host: ${HOST}\n    listen: "127.0.0.1:${await freePort()}"\n    user: app\n    database: postgres\n    auth: { password: { env: APP_PASSWORD } }\n    tls: { ca: ${caPath} }\n    bastion: { instanceId: ${bastion} }\n    tunnel: { driver: native, mode: eager }\n`,
  );
  return path;
}

describe("SIGTERM while a target's first SSM session is still opening", () => {
  it("StartSession not answered: the request is abandoned and the daemon exits 0", async () => {
    const held = emulatorLogs(`StartSession on ${SLOW_API_BASTION}: held`);
    const gaveUp = emulatorLogs(`StartSession on ${SLOW_API_BASTION}: the caller gave up`);
    const daemon = await startDaemon(await configFor("slowapi", SLOW_API_BASTION), env);
    await held;
    expect(await daemon.stop()).toBe(0);
    await gaveUp;
    expect(emulator.sessions().filter((s) => s.instanceId === SLOW_API_BASTION)).toEqual([]);
  }, 15_000);

  it("the handshake never starts: the session StartSession returned is terminated and the daemon exits 0", async () => {
    const daemon = await startDaemon(await configFor("silent", SILENT_AGENT_BASTION), env);
    // The data channel is open (OpenDataChannel accepted) and the agent sends no handshake.
    const opening = await emulator.waitForSession((s) => s.instanceId === SILENT_AGENT_BASTION && s.state === "Connected");
    expect(await daemon.stop()).toBe(0);
    expect(emulator.session(opening.sessionId)).toMatchObject({ state: "Terminated", endReason: "terminated by TerminateSession" });
  }, 15_000);

  it("the data channel's websocket not answered: the opening is abandoned, its session terminated, and the daemon exits 0", async () => {
    const held = emulatorLogs("upgrade held");
    const daemon = await startDaemon(await configFor("slowchannel", SLOW_CHANNEL_BASTION), env);
    await held;
    const [opening] = emulator.sessions().filter((s) => s.instanceId === SLOW_CHANNEL_BASTION);
    expect(await daemon.stop()).toBe(0);
    expect(emulator.session(opening!.sessionId)).toMatchObject({ state: "Terminated", endReason: "terminated by TerminateSession" });
  }, 15_000);
});
