import type { Duplex } from "node:stream";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { ProxyError } from "@rdsd/proxy";
import { startEmulator } from "@rdsd/ssm-emulator";
import type { Emulator } from "@rdsd/ssm-emulator";
import type { Tunnel } from "../src/tunnel.js";
import { tcpServer, type TcpServer } from "@rdsd/testkit";
import { RDS_HOST, sslAnsweringEchoServer, streamError } from "./helpers.js";
import { FAST, roundTrip, target, tunnelFor, waitForState } from "./tunnel-helpers.js";

const INSTANCE = "i-0e1d2c3b4a5968778";
let emulator: Emulator;
let db: TcpServer;
const tunnels: Tunnel[] = [];

beforeAll(async () => {
  db = await sslAnsweringEchoServer();
  emulator = await startEmulator({
    pacing: false,
    hostMap: [`${RDS_HOST}=127.0.0.1:${db.port}`],
    instances: [
      { instanceId: INSTANCE, tags: { Name: "db-bastion" } },
      { instanceId: "i-0aaaaaaaaaaaaaaa1", tags: { Name: "pool-bastion" } },
      { instanceId: "i-0aaaaaaaaaaaaaaa2", tags: { Name: "pool-bastion" } },
    ],
  });
});
afterEach(async () => {
  for (const t of tunnels.splice(0)) await t.stop();
  // Nothing of any session is left open on the emulator once the tunnels stopped.
  expect(emulator.sessions({ active: true })).toEqual([]);
  for (const i of emulator.instances()) {
    emulator.setFaults({ instanceId: i.instanceId }, null);
    emulator.setInstanceOnline(i.instanceId, true);
  }
});
afterAll(async () => {
  await emulator.close();
  await db.close();
});

function track(t: Tunnel): Tunnel {
  tunnels.push(t);
  return t;
}

async function readyTunnel(overrides: Parameters<typeof target>[0] = {}, deps = {}) {
  const t = track(tunnelFor(emulator, target(overrides), deps));
  t.start();
  const status = await waitForState(t, "ready");
  return { t, status };
}

describe("supervisor against the emulator", () => {
  it("eager: opens, probes and reports the session; stop terminates it on AWS", async () => {
    const { t, status } = await readyTunnel();
    expect(status).toMatchObject({ state: "ready", driver: "native", mode: "eager", bastion: INSTANCE, lastError: null });
    expect(status.sessionIds).toHaveLength(1);
    expect(emulator.sessions({ active: true }).map((s) => s.sessionId)).toEqual(status.sessionIds);
    const stream = await roundTrip(t);
    expect(t.status().connections).toBe(1);
    const closed = streamError(stream);
    await t.stop();
    expect(await closed).toBeInstanceOf(ProxyError);
    expect(emulator.session(status.sessionIds[0]!)?.state).toBe("Terminated");
    expect(t.status().state).toBe("idle");
  });

  it("websocket drop: resumes the same session; a connection in flight keeps working", async () => {
    const { t, status } = await readyTunnel();
    const stream = await roundTrip(t, "before");
    expect(emulator.dropWebSocket(status.sessionIds[0]!)).toBe(true);
    const again = new Promise<string>((resolve) => stream.once("data", (b: Buffer) => resolve(b.toString())));
    stream.write("after");
    expect(await again).toBe("after");
    expect(t.status().sessionIds).toEqual(status.sessionIds);
    expect(emulator.session(status.sessionIds[0]!)!.connections).toBeGreaterThanOrEqual(2);
    stream.destroy();
  });

  it("channel_closed (idle timeout): connections in flight get a clean error, a new session takes over", async () => {
    const { t, status } = await readyTunnel();
    const stream = await roundTrip(t);
    const failure = streamError(stream);
    emulator.closeSession(status.sessionIds[0]!, "idle-timeout");
    const err = await failure;
    expect(err).toBeInstanceOf(ProxyError);
    expect(err!.message).toContain("timed out due to inactivity");
    const next = await waitForState(t, (s) => s.state === "ready" && s.sessionIds[0] !== status.sessionIds[0]);
    expect(next.sessionIds).toHaveLength(1);
    (await roundTrip(t)).destroy();
  });

  it("black hole (accepts bytes, carries nothing): the probe finds it and the session is replaced", async () => {
    const { t, status } = await readyTunnel();
    const stream = await roundTrip(t);
    const failure = streamError(stream);
    emulator.setFaults({ sessionId: status.sessionIds[0]! }, { blackHole: true });
    const next = await waitForState(t, (s) => s.state === "ready" && s.sessionIds[0] !== status.sessionIds[0]);
    expect(await failure).toBeInstanceOf(ProxyError);
    expect(emulator.session(status.sessionIds[0]!)!.state).toBe("Terminated");
    expect(next.sessionIds).toHaveLength(1);
    (await roundTrip(t)).destroy();
  });

  it("black hole with a client writing: found by the unacknowledged data within the stall limit, long before the quiet-session check", async () => {
    // Periodic probes and the data channel's own stall limit are out of reach: only the stall probe can find it.
    const slow = {
      supervisor: { livenessIntervalMs: 3_600_000, wakeCheckIntervalMs: 100, stallProbeMs: 400, backoff: { initialMs: 50, maxMs: 500 }, openTimeoutMs: 5_000 },
      channel: { ackStallTimeoutMs: 3_600_000, resumeTimeoutMs: 3_000, livenessTimeoutMs: 500 },
    };
    const { t, status } = await readyTunnel({}, slow);
    const stream = await roundTrip(t);
    const failure = streamError(stream);
    emulator.setFaults({ sessionId: status.sessionIds[0]! }, { blackHole: true });
    const started = Date.now();
    stream.write("into the void");
    const next = await waitForState(t, (s) => s.state === "ready" && s.sessionIds[0] !== status.sessionIds[0], 5_000);
    expect(Date.now() - started).toBeLessThan(3_000); // 400 ms stall + a 100 ms beat + a 500 ms liveness deadline, with margin
    expect(await failure).toBeInstanceOf(ProxyError);
    expect(next.sessionIds).toHaveLength(1);
    (await roundTrip(t)).destroy();
  });

  it("a session whose agent stops acknowledging is found by the stall check (a NOP that gets no acknowledgement) and replaced", async () => {
    const logs: string[] = [];
    const logger = { debug: () => {}, info: (m: string) => logs.push(m), warn: (m: string) => logs.push(m), error: (m: string) => logs.push(m) };
    // Quiet-session checks and the data channel's own stall limit are out of reach: only the stall check can find it.
    const deps = {
      supervisor: { livenessIntervalMs: 3_600_000, wakeCheckIntervalMs: 50, stallProbeMs: 200, backoff: { initialMs: 50, maxMs: 500 }, openTimeoutMs: 5_000 },
      channel: { ackStallTimeoutMs: 3_600_000, resumeTimeoutMs: 3_000 },
      logger,
    };
    const { t, status } = await readyTunnel({}, deps);
    const stream = await roundTrip(t);
    const failure = streamError(stream);
    emulator.setFaults({ sessionId: status.sessionIds[0]! }, { stopAcknowledging: true });
    stream.write("unacknowledged");
    const next = await waitForState(t, (s) => s.state === "ready" && s.sessionIds[0] !== status.sessionIds[0], 10_000);
    expect(await failure).toBeInstanceOf(ProxyError);
    expect(logs).toContain("no acknowledgement on the session; checking it now");
    expect(logs).toContain("tunnel session failed its check; replacing it");
    expect(next.sessionIds).toHaveLength(1);
    (await roundTrip(t)).destroy();
  });

  it("agent stops acknowledging: the session is declared lost and replaced", async () => {
    const { t, status } = await readyTunnel();
    emulator.setFaults({ sessionId: status.sessionIds[0]! }, { stopAcknowledging: true });
    const next = await waitForState(t, (s) => s.state === "ready" && s.sessionIds[0] !== status.sessionIds[0], 15_000);
    expect(emulator.session(status.sessionIds[0]!)!.state).toBe("Terminated");
    expect(next.sessionIds).toHaveLength(1);
    (await roundTrip(t)).destroy();
  });

  it("destination unreachable from the start: the session stays (degraded, with the cause and fix), clients are told; the same session serves once the route returns", async () => {
    const sessionsBefore = emulator.sessions().length;
    emulator.setFaults({ instanceId: INSTANCE }, { destinationUnreachable: true });
    const t = track(tunnelFor(emulator, target()));
    t.start();
    const degraded = await waitForState(t, "degraded");
    expect(degraded.lastError?.message).toBe(`bastion ${INSTANCE} could not connect to ${RDS_HOST}:5432`);
    expect(degraded.lastError?.fix).toContain("security group");
    expect(degraded.sessionIds).toHaveLength(1);
    const err = await t.dialer.dial(AbortSignal.timeout(10_000)).then((s) => streamError(s));
    expect(err).toBeInstanceOf(ProxyError);
    expect((err as ProxyError).message).toContain("could not connect to");
    emulator.setFaults({ instanceId: INSTANCE }, null);
    (await roundTrip(t)).destroy();
    expect(t.status()).toMatchObject({ state: "ready", lastError: null, sessionIds: degraded.sessionIds });
    expect(emulator.sessions().slice(sessionsBefore)).toHaveLength(1); // one StartSession, all along
  });

  it("bastion by tag: another online instance is used when the current one goes offline", async () => {
    const { t, status } = await readyTunnel({ bastion: { tag: { key: "Name", value: "pool-bastion" } } });
    const first = status.bastion!;
    expect(["i-0aaaaaaaaaaaaaaa1", "i-0aaaaaaaaaaaaaaa2"]).toContain(first);
    emulator.setInstanceOnline(first, false);
    const next = await waitForState(t, (s) => s.state === "ready" && s.sessionIds[0] !== status.sessionIds[0], 15_000);
    expect(next.bastion).not.toBe(first);
    expect(next.bastionSelector).toBe("tag Name=pool-bastion");
    (await roundTrip(t)).destroy();
  });

  it("no online bastion with the tag: reconnecting, with the fix", async () => {
    const t = track(tunnelFor(emulator, target({ bastion: { tag: { key: "Name", value: "nothing-here" } } })));
    t.start();
    const failed = await waitForState(t, "reconnecting");
    expect(failed.lastError?.message).toBe("no online bastion carries tag Name=nothing-here in eu-west-2");
    expect(failed.lastError?.fix).toContain("describe-instance-information");
  });

  it("expired SSO credentials: status and connecting clients get the exact fix, no secret anywhere", async () => {
    const expired = async () => {
      throw new Error("The SSO session associated with this profile has expired or is otherwise invalid. To refresh this SSO session run aws sso login with the corresponding profile.");
    };
    const t = track(tunnelFor(emulator, target(), { credentials: expired, profile: "dev-sso" }));
    t.start();
    const failed = await waitForState(t, "reconnecting");
    expect(failed.lastError?.fix).toBe("run `aws sso login --profile dev-sso`");
    const err = (await t.dialer.dial(AbortSignal.timeout(10_000)).catch((e: unknown) => e)) as ProxyError;
    expect(err).toBeInstanceOf(ProxyError);
    expect(err.fix).toBe("run `aws sso login --profile dev-sso`");
    expect(JSON.stringify(t.status())).not.toContain(emulator.credentials.secretAccessKey);
  });

  it("lazy: no session until the first client, closed after the idle timeout", async () => {
    const t = track(tunnelFor(emulator, target({ tunnel: { mode: "lazy", idleTimeoutMs: 300 } })));
    t.start();
    expect(t.status().state).toBe("idle");
    expect(emulator.sessions({ active: true })).toEqual([]);
    const stream = await roundTrip(t);
    expect(t.status().state).toBe("ready");
    const id = t.status().sessionIds[0]!;
    const idle = waitForState(t, "idle");
    stream.destroy();
    await idle;
    await emulator.waitForSession((s) => s.sessionId === id && s.state === "Terminated");
    expect(emulator.sessions({ active: true })).toEqual([]);
  });

  it("sessions: N keeps N sessions and spreads connections over them", async () => {
    const { t, status } = await readyTunnel({ tunnel: { sessions: 3 } });
    expect(status.sessionIds).toHaveLength(3);
    const streams: Duplex[] = [];
    for (let i = 0; i < 6; i++) streams.push(await roundTrip(t));
    expect(t.status().sessions.map((s) => s.activeStreams)).toEqual([2, 2, 2]);
    for (const s of streams) s.destroy();
  });

  it("a new connection goes to the session carrying the fewest clients: an idle stream (parked, spare) counts only to break ties", async () => {
    const { t } = await readyTunnel({ tunnel: { sessions: 3 } });
    const streams: Duplex[] = [];
    for (let i = 0; i < 3; i++) streams.push(await roundTrip(t));
    expect(t.status().sessions.map((s) => s.activeStreams)).toEqual([1, 1, 1]);
    // The third session's stream now waits idle (a parked server connection): that session carries no client.
    t.dialer.markIdle!(streams[2]!, true);
    streams.push(await roundTrip(t));
    expect(t.status().sessions.map((s) => s.activeStreams)).toEqual([1, 1, 2]);
    // With every session carrying one client, the tie goes to a session without the idle stream.
    streams.push(await roundTrip(t));
    expect(t.status().sessions.map((s) => s.activeStreams)).toEqual([2, 1, 2]);
    for (const s of streams) s.destroy();
  });

  it("a spare's stream is idle from its dial: a client dialing while the spare's TLS handshake runs goes to the spare's session, not beside another client", async () => {
    const { t } = await readyTunnel({ tunnel: { sessions: 2 } });
    const client = await roundTrip(t);
    const spare = await t.dialer.dial(AbortSignal.timeout(10_000), "spare");
    expect(t.status().sessions.map((s) => s.activeStreams)).toEqual([1, 1]);
    // Before, the spare counted as a client until its TLS was up: the tie sent the next client beside the first.
    const next = await roundTrip(t);
    expect(t.status().sessions.map((s) => s.activeStreams)).toEqual([1, 2]);
    for (const s of [client, spare, next]) s.destroy();
  });

  it("a client arriving during a rebuild waits for the new session instead of failing", async () => {
    const { t, status } = await readyTunnel();
    // Slow down new sessions so the rebuild takes a while.
    emulator.setFaults({ instanceId: INSTANCE }, { latencyMs: 150 });
    emulator.closeSession(status.sessionIds[0]!, "terminated");
    await waitForState(t, "reconnecting");
    const stream = await roundTrip(t);
    expect(t.status().state).toBe("ready");
    expect(t.status().sessionIds[0]).not.toBe(status.sessionIds[0]);
    stream.destroy();
  });

  it("restart replaces the session", async () => {
    const { t, status } = await readyTunnel();
    await t.restart();
    const next = await waitForState(t, (s) => s.state === "ready" && s.sessionIds[0] !== status.sessionIds[0]);
    expect(emulator.session(status.sessionIds[0]!)!.state).toBe("Terminated");
    expect(next.sessionIds).toHaveLength(1);
  });

  it("stop during the new session's probe (a database that never answers) abandons it and terminates the session", async () => {
    const silent = await tcpServer(() => {});
    const host = "silent-db.abc123xyz.eu-west-2.rds.amazonaws.com";
    emulator.mapHost({ from: `${host}:5432`, to: `127.0.0.1:${silent.port}` });
    try {
      // Probe and open limits far beyond this test's timeout: only abandoning the probe lets stop() finish in time.
      const t = track(tunnelFor(emulator, target({ host }), { supervisor: { ...FAST.supervisor, probeTimeoutMs: 120_000, openTimeoutMs: 120_000 } }));
      t.start();
      const probing = await emulator.waitForSession((s) => s.properties.host === host && s.openDestinationConnections === 1);
      await t.stop();
      expect(emulator.session(probing.sessionId)!.state).toBe("Terminated");
      expect(t.status().sessionIds).toEqual([]);
    } finally {
      await silent.close();
    }
  }, 10_000);
});
