import { afterAll, beforeAll, expect, it } from "vitest";
import { startEmulator } from "@rdsd/ssm-emulator";
import type { Emulator } from "@rdsd/ssm-emulator";
import type { TcpServer } from "@rdsd/testkit";
import { RDS_HOST, sslAnsweringEchoServer } from "./helpers.js";
import { roundTrip, target, tunnelFor, waitForState } from "./tunnel-helpers.js";

// The supervisor's default timings (no FAST overrides): liveness is checked without the database, and a dead
// session is still found within seconds.
const DEFAULTS = { supervisor: {}, channel: {} };
const OTHER_HOST = "orders-replica.abc123xyz.eu-west-2.rds.amazonaws.com";

let emulator: Emulator;
let db: TcpServer;

beforeAll(async () => {
  db = await sslAnsweringEchoServer();
  emulator = await startEmulator({ pacing: false, hostMap: [`${RDS_HOST}=127.0.0.1:${db.port}`, `${OTHER_HOST}=127.0.0.1:${db.port}`] });
});
afterAll(async () => {
  await emulator.close();
  await db.close();
});

it("65 s idle with eager sessions: the sessions are checked (NOPs the agent acknowledges) and no TCP connection reaches the database", async () => {
  const tunnels = [tunnelFor(emulator, target({ tunnel: { sessions: 2 } }), DEFAULTS), tunnelFor(emulator, target({ name: "replica", host: OTHER_HOST }), DEFAULTS)];
  try {
    for (const t of tunnels) t.start();
    const ready = await Promise.all(tunnels.map((t) => waitForState(t, "ready")));
    const ids = ready.flatMap((s) => s.sessionIds);
    expect(ids).toHaveLength(3);
    // One probe per new session, through the database: that is all.
    expect(db.connections).toHaveLength(3);
    const bytesBefore = ids.map((id) => emulator.session(id)!.bytesFromClient);
    await new Promise((r) => setTimeout(r, 65_000));
    expect(db.connections).toHaveLength(3);
    // The same sessions, alive, and each was checked: the agent received NOP frames (8 bytes each).
    expect(tunnels.flatMap((t) => t.status().sessionIds)).toEqual(ids);
    ids.forEach((id, i) => expect(emulator.session(id)!.bytesFromClient - bytesBefore[i]!).toBeGreaterThanOrEqual(8 * 4));
    (await roundTrip(tunnels[0]!)).destroy();
    expect(db.connections).toHaveLength(4); // a client dials the database, of course
  } finally {
    for (const t of tunnels) await t.stop();
  }
}, 120_000);

it("an idle session that goes black (carries nothing, acknowledges nothing) is found and replaced within 20 s", async () => {
  const t = tunnelFor(emulator, target(), DEFAULTS);
  try {
    t.start();
    const { sessionIds } = await waitForState(t, "ready");
    const dead = sessionIds[0]!;
    emulator.setFaults({ sessionId: dead }, { blackHole: true });
    const replaced = await waitForState(t, (s) => s.sessionIds.length === 1 && s.sessionIds[0] !== dead, 20_000);
    expect(replaced.lastError === null || replaced.lastError.message.includes("did not acknowledge a keep-alive")).toBe(true);
    expect(emulator.session(dead)!.state).toBe("Terminated");
    (await roundTrip(t)).destroy();
  } finally {
    await t.stop();
  }
}, 60_000);
