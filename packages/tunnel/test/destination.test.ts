import { afterAll, beforeAll, expect, it } from "vitest";
import { ProxyError } from "@rdsd/proxy";
import { startEmulator } from "@rdsd/ssm-emulator";
import type { Emulator } from "@rdsd/ssm-emulator";
import type { TcpServer } from "@rdsd/testkit";
import type { TunnelStatus } from "../src/tunnel.js";
import { RDS_HOST, sslAnsweringEchoServer, streamError } from "./helpers.js";
import { roundTrip, target, tunnelFor, waitForState } from "./tunnel-helpers.js";

// ConnectToPortError is per stream (the agent could not dial the database for one connection): the session is
// kept, and no StartSession is spent on a database that is down.
const BAD_BASTION = "i-0bbbbbbbbbbbbbbb1";
const GOOD_BASTION = "i-0bbbbbbbbbbbbbbb2";

let emulator: Emulator;
let db: TcpServer;

beforeAll(async () => {
  db = await sslAnsweringEchoServer();
  emulator = await startEmulator({
    pacing: false,
    hostMap: [`${RDS_HOST}=127.0.0.1:${db.port}`],
    instances: [{ instanceId: BAD_BASTION }, { instanceId: GOOD_BASTION }],
  });
});
afterAll(async () => {
  await emulator.close();
  await db.close();
});

it("database unreachable for 45 s: clients get the hint, one StartSession, the target beside it untouched; then the same session serves", async () => {
  emulator.setFaults({ instanceId: BAD_BASTION }, { destinationUnreachable: true });
  const bad = tunnelFor(emulator, target({ name: "orders", bastion: { instanceId: BAD_BASTION } }));
  const good = tunnelFor(emulator, target({ name: "healthy", bastion: { instanceId: GOOD_BASTION } }));
  try {
    good.start();
    const goodReady = await waitForState(good, "ready");
    const goodChanges: TunnelStatus[] = [];
    good.on("state", (s) => goodChanges.push(s));
    bad.start();
    const degraded = await waitForState(bad, "degraded");
    expect(degraded.lastError).toEqual({
      message: `bastion ${BAD_BASTION} could not connect to ${RDS_HOST}:5432`,
      fix: "check the database's security group allows the bastion, that the database is available, and the target's host and port",
    });

    const until = Date.now() + 45_000;
    let clients = 0;
    while (Date.now() < until) {
      const err = await bad.dialer.dial(AbortSignal.timeout(10_000)).then(streamError, (e: unknown) => e);
      expect(err).toBeInstanceOf(ProxyError);
      expect((err as ProxyError).fix).toContain("security group");
      clients++;
      await new Promise((r) => setTimeout(r, 3_000));
    }
    expect(clients).toBeGreaterThanOrEqual(10);
    const onBad = emulator.sessions().filter((s) => s.instanceId === BAD_BASTION);
    expect(onBad).toHaveLength(1); // at most one StartSession for the slot
    expect(bad.status()).toMatchObject({ state: "degraded", sessionIds: degraded.sessionIds });
    // The healthy target beside it: the same session, ready all along.
    expect(goodChanges).toEqual([]);
    expect(good.status()).toMatchObject({ state: "ready", sessionIds: goodReady.sessionIds });

    emulator.setFaults({ instanceId: BAD_BASTION }, null);
    (await roundTrip(bad)).destroy();
    expect(bad.status()).toMatchObject({ state: "ready", lastError: null, sessionIds: degraded.sessionIds });
    expect(emulator.sessions().filter((s) => s.instanceId === BAD_BASTION)).toHaveLength(1);
  } finally {
    await bad.stop();
    await good.stop();
  }
}, 120_000);
