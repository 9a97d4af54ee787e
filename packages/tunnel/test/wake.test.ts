import { afterAll, beforeAll, expect, it } from "vitest";
import { startEmulator } from "@rdsd/ssm-emulator";
import type { Emulator } from "@rdsd/ssm-emulator";
import { randomUuid } from "@rdsd/ssm-protocol";
import { BastionResolver } from "../src/bastion.js";
import { ManualClock } from "../src/clock.js";
import { NativeDriver } from "../src/native-driver.js";
import { Supervisor } from "../src/supervisor.js";
import type { SupervisorOptions, SupervisorStatus } from "../src/supervisor.js";
import type { SsmApi } from "../src/ssm-api.js";
import type { TcpServer } from "@rdsd/testkit";
import { apiFor, RDS_HOST, sslAnsweringEchoServer } from "./helpers.js";

let emulator: Emulator;
let db: TcpServer;

beforeAll(async () => {
  db = await sslAnsweringEchoServer();
  emulator = await startEmulator({ pacing: false, hostMap: [`${RDS_HOST}=127.0.0.1:${db.port}`] });
});
afterAll(async () => {
  await emulator.close();
  await db.close();
});

/**
 * One eager native session to the emulator's bastion on a manual clock: a beat every 5 s, a gap of 15 s more is a
 * sleep, and no quiet-session check comes on its own (an hour of manual time).
 */
function supervisorOn(api: SsmApi, clock: ManualClock, options: Partial<SupervisorOptions> = {}): Supervisor {
  return new Supervisor({
    name: "orders-dev",
    host: RDS_HOST,
    port: 5432,
    mode: "eager",
    idleTimeoutMs: 600_000,
    sessions: 1,
    factory: new NativeDriver({ api, host: RDS_HOST, port: 5432, clientId: randomUuid() }),
    bastion: new BastionResolver({ instanceId: emulator.instances()[0]!.instanceId }, api, clock),
    clock,
    livenessIntervalMs: 3_600_000,
    wakeCheckIntervalMs: 5_000,
    wakeThresholdMs: 15_000,
    ...options,
  });
}

function nextState(supervisor: Supervisor, match: (s: SupervisorStatus) => boolean): Promise<SupervisorStatus> {
  return new Promise((resolve) => {
    if (match(supervisor.status())) return resolve(supervisor.status());
    const listener = (s: SupervisorStatus) => {
      if (!match(s)) return;
      supervisor.off("state", listener);
      resolve(s);
    };
    supervisor.on("state", listener);
  });
}

/** A started supervisor on a manual clock for `body`; stopped (and its SSM client closed) whatever happens. */
async function withSupervisor(options: Partial<SupervisorOptions>, body: (supervisor: Supervisor, clock: ManualClock) => Promise<void>): Promise<void> {
  const api = apiFor(emulator);
  const clock = new ManualClock(Date.now());
  const supervisor = supervisorOn(api, clock, options);
  try {
    supervisor.start();
    await body(supervisor, clock);
  } finally {
    await supervisor.stop();
    api.destroy();
  }
}

it("a clock jump (the machine slept) probes at once and replaces a dead session", async () => {
  const api = apiFor(emulator);
  const clock = new ManualClock(Date.now());
  const supervisor = supervisorOn(api, clock, { probeTimeoutMs: 300 });
  supervisor.start();
  const first = await nextState(supervisor, (s) => s.state === "ready");
  const id = first.sessionIds[0]!;
  emulator.setFaults({ sessionId: id }, { blackHole: true });

  // Normal heartbeats: no probe, the dead session goes unnoticed.
  clock.advance(5_000);
  clock.advance(5_000);
  await new Promise((r) => setTimeout(r, 600));
  expect(supervisor.status().sessionIds).toEqual([id]);

  // The machine "sleeps" for a minute: the next heartbeat sees the gap and probes now.
  const replaced = nextState(supervisor, (s) => s.state === "ready" && s.sessionIds[0] !== id);
  clock.jump(60_000);
  const after = await replaced;
  expect(after.sessionIds).toHaveLength(1);
  expect(emulator.session(id)!.state).toBe("Terminated");
  await supervisor.stop();
  expect(emulator.sessions({ active: true })).toEqual([]);
  api.destroy();
});

it("the first client after a sleep waits for the session check (milliseconds, or a new session), not for a dead websocket", async () => {
  await withSupervisor({}, async (supervisor, clock) => {
    const first = await nextState(supervisor, (s) => s.state === "ready");
    const id = first.sessionIds[0]!;
    // The network changed while the lid was shut: the old session carries nothing any more.
    emulator.setFaults({ sessionId: id }, { blackHole: true });
    clock.sleep(60_000); // the beat has not run since: only the client's arrival can notice the gap
    const stream = await supervisor.acquire(AbortSignal.timeout(15_000));
    expect(supervisor.status().sessionIds).not.toContain(id);
    const answer = new Promise<string>((resolve) => stream.once("data", (b: Buffer) => resolve(b.toString("latin1"))));
    stream.write(Buffer.from([0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]));
    expect(await answer).toBe("S");
    stream.destroy();
    await emulator.waitForSession((s) => s.sessionId === id && s.state === "Terminated");
  });
}, 30_000);

it("a stream that waited idle through a sleep is vouched for only after its session's check: not when the session died, yes when it lives", async () => {
  await withSupervisor({}, async (supervisor, clock) => {
    const first = await nextState(supervisor, (s) => s.state === "ready");
    const live = await supervisor.acquire(AbortSignal.timeout(15_000));
    // Awake: known at once, nothing to wait for.
    expect(supervisor.usable(live)).toBe(true);

    // Asleep a minute with the session alive: the answer waits for the check, which passes.
    clock.sleep(60_000);
    const afterLiveSleep = supervisor.usable(live);
    expect(afterLiveSleep).toBeInstanceOf(Promise);
    expect(await afterLiveSleep).toBe(true);
    expect(supervisor.status().sessionIds).toEqual(first.sessionIds);

    // Asleep again, and the session died meanwhile: the check replaces it and the stream is not vouched for.
    emulator.setFaults({ sessionId: first.sessionIds[0]! }, { blackHole: true });
    clock.sleep(60_000);
    expect(await supervisor.usable(live)).toBe(false);
    expect(supervisor.status().sessionIds).not.toContain(first.sessionIds[0]);
    live.destroy();
    // A stream that has closed is never vouched for.
    const closed = await supervisor.acquire(AbortSignal.timeout(15_000));
    closed.destroy();
    expect(supervisor.usable(closed)).toBe(false);
  });
}, 30_000);

it("a stream whose session leaves its slot while its post-sleep check runs is not vouched for until a check passes", async () => {
  // The age limit falls due during the wake's check: the session is replaced and drains, its check still running.
  await withSupervisor({ sessionMaxAgeMs: 120_000 }, async (supervisor, clock) => {
    const first = await nextState(supervisor, (s) => s.state === "ready");
    const id = first.sessionIds[0]!;
    const parked = await supervisor.acquire(AbortSignal.timeout(15_000));
    supervisor.markIdle(parked, true);
    emulator.setFaults({ sessionId: id }, { blackHole: true });
    clock.sleep(60_000);
    const duringCheck = supervisor.usable(parked);
    expect(duringCheck).toBeInstanceOf(Promise);
    const replaced = new Promise<void>((resolve) => {
      const draining = () => {
        if (!supervisor.status().sessions.some((session) => session.id === id && session.draining)) return;
        supervisor.off("change", draining);
        resolve();
      };
      supervisor.on("change", draining);
    });
    clock.advance(120_000);
    await replaced;
    // Out of the slot, with its check not passed: before, it was taken for alive until its streams end.
    expect(supervisor.usable(parked)).toBe(false);
    expect(await duringCheck).toBe(false);
    parked.destroy();
  });
}, 30_000);
