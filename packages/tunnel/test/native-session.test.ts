import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ProxyError } from "@rdsd/proxy";
import { startEmulator } from "@rdsd/ssm-emulator";
import type { Emulator } from "@rdsd/ssm-emulator";
import { randomUuid } from "@rdsd/ssm-protocol";
import { openNativeSession } from "../src/native-session.js";
import type { NativeSession, NativeSessionOptions } from "../src/native-session.js";
import type { SsmApi } from "../src/ssm-api.js";
import { echoServer, readHashed, seededBytes } from "@rdsd/testkit";
import type { TcpServer } from "@rdsd/testkit";
import { apiFor, RDS_HOST, sha256 } from "./helpers.js";

let emulator: Emulator;
let echo: TcpServer;
let api: SsmApi;
const clientId = randomUuid();
const logWaiters: { match: string; resolve: () => void }[] = [];

/** Resolves at the emulator's next log line containing `match`. */
function emulatorLogs(match: string): Promise<void> {
  return new Promise((resolve) => logWaiters.push({ match, resolve }));
}

beforeAll(async () => {
  echo = await echoServer();
  emulator = await startEmulator({
    pacing: false,
    hostMap: [`${RDS_HOST}=127.0.0.1:${echo.port}`],
    // The agent would end an unfinished handshake by itself after this; longer than any test here.
    handshakeTimeoutMs: 120_000,
    log: (line) => {
      for (const w of logWaiters) if (line.includes(w.match)) w.resolve();
    },
  });
  api = apiFor(emulator);
});
afterAll(async () => {
  await emulator.close();
  await echo.close();
  api.destroy();
});

function open(): Promise<NativeSession> {
  return openNativeSession({ api, instanceId: emulator.instances()[0]!.instanceId, host: RDS_HOST, port: 5432, clientId }, AbortSignal.timeout(10_000));
}

describe("native session against the emulator", () => {
  it("multiplexes: bytes go through a smux stream and come back intact", async () => {
    const session = await open();
    expect(session.singleUse).toBe(false);
    expect(emulator.session(session.id)?.mode).toBe("multiplexed");
    const stream = await session.openStream();
    const data = seededBytes(200_000);
    const back = readHashed(stream, data.length);
    stream.write(data);
    expect((await back).hash).toBe(sha256(data));
    stream.destroy();
    await session.close();
    expect(emulator.session(session.id)?.state).toBe("Terminated");
  });
});

describe("an opening abandoned through its signal", () => {
  /** Starts opening a session on a new instance with `faults`; `abandon()` aborts it. */
  function openOn(instanceId: string, faults: Parameters<Emulator["setFaults"]>[1], channel: NativeSessionOptions["channel"] = {}) {
    emulator.addInstance({ instanceId });
    emulator.setFaults({ instanceId }, faults);
    const controller = new AbortController();
    const opening = openNativeSession({ api, instanceId, host: RDS_HOST, port: 5432, clientId, channel }, controller.signal);
    return { opening: opening.catch((err: unknown) => err), abandon: () => controller.abort() };
  }

  it("while StartSession is unanswered: rejects, and no session is started", async () => {
    const held = emulatorLogs("StartSession on i-0b0000000000000a1: held");
    const gaveUp = emulatorLogs("StartSession on i-0b0000000000000a1: the caller gave up");
    const { opening, abandon } = openOn("i-0b0000000000000a1", { startSessionDelayMs: 60_000 });
    await held;
    abandon();
    expect(await opening).toBeInstanceOf(Error);
    await gaveUp;
    expect(emulator.sessions().filter((s) => s.instanceId === "i-0b0000000000000a1")).toEqual([]);
  }, 10_000);

  it("while the data channel's websocket is unanswered: rejects, and the session StartSession returned is terminated", async () => {
    const held = emulatorLogs("upgrade held");
    const { opening, abandon } = openOn("i-0b0000000000000a2", { channelAcceptDelayMs: 60_000 });
    await held;
    abandon();
    expect(await opening).toBeInstanceOf(ProxyError);
    const [session] = emulator.sessions().filter((s) => s.instanceId === "i-0b0000000000000a2");
    expect(session).toMatchObject({ state: "Terminated", endReason: "terminated by TerminateSession", connections: 0 });
  }, 10_000);

  it("while the agent sends no handshake: rejects, and the session is terminated", async () => {
    const { opening, abandon } = openOn("i-0b0000000000000a3", { blackHole: true });
    const connected = await emulator.waitForSession((s) => s.instanceId === "i-0b0000000000000a3" && s.state === "Connected");
    abandon();
    expect(await opening).toBeInstanceOf(ProxyError);
    expect(emulator.session(connected.sessionId)).toMatchObject({ state: "Terminated", endReason: "terminated by TerminateSession" });
  }, 10_000);

  it("the handshake timeout also covers a websocket that is never answered: rejects with it, and the session is terminated", async () => {
    const { opening } = openOn("i-0b0000000000000a4", { channelAcceptDelayMs: 60_000 }, { handshakeTimeoutMs: 300 });
    expect(((await opening) as Error).message).toMatch(/did not complete the handshake within 0.3 s/);
    const [session] = emulator.sessions().filter((s) => s.instanceId === "i-0b0000000000000a4");
    expect(session).toMatchObject({ state: "Terminated", endReason: "terminated by TerminateSession" });
  }, 10_000);
});
