import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import type { UpstreamAuth } from "@rdsd/proxy";
import { RecordingLogger, startProxyWorld, untilIdle, type ProxyWorld, type RunningProxy } from "./fixture.js";
import { firstColumn, query, RawConnection, startupMessage } from "./raw.js";

// IAM tokens with a frozen clock, as in clients.test.ts: the right token is known in advance.
const FROZEN_TIME = new Date(Math.floor(Date.now() / 1000) * 1000);

let world: ProxyWorld;
const running: RunningProxy[] = [];

beforeAll(async () => {
  world = await startProxyWorld();
  vi.useFakeTimers({ toFake: ["Date"], now: FROZEN_TIME });
  await world.pg.admin(`ALTER ROLE iam_user PASSWORD '${await world.expectedToken("iam_user")}'`);
});

afterAll(async () => {
  vi.useRealTimers();
  await world?.close();
});

afterEach(async () => {
  expect(RawConnection.destroyAll()).toBe(0);
  for (const r of running.splice(0)) await r.stop();
});

/** IAM auth that counts how often the proxy asked for a token. */
function countingIam(): UpstreamAuth & { calls: number } {
  const inner = world.iam("iam_user");
  const auth = {
    method: inner.method,
    calls: 0,
    secret() {
      auth.calls++;
      return inner.secret();
    },
  };
  return auth;
}

async function start(pool: { spares: number; sparesAlways: boolean; spareRefreshMs?: number }, auth: UpstreamAuth = world.iam("iam_user")) {
  const logger = new RecordingLogger();
  const proxy = await world.startProxy({ user: "iam_user", auth, defaultDatabase: "orders", logger, pool: { idle: 4, idleTimeoutMs: 60_000, ...pool } });
  running.push(proxy);
  return { proxy, logger };
}

/** Logs in, runs `select 1`, ends; what the proxy logged about the login. */
async function oneClient(proxy: RunningProxy, logger: RecordingLogger): Promise<Record<string, unknown>> {
  const mark = logger.mark();
  const conn = await RawConnection.open(proxy.port);
  conn.send(startupMessage({ user: "someone", database: "orders" }));
  const greeting = await conn.framesUntil("Z");
  expect(greeting.map((f) => f.type)).not.toContain("E");
  conn.send(query("SELECT 1"));
  expect(firstColumn(await conn.framesUntil("Z"))).toEqual(["1"]);
  await conn.terminate();
  await untilIdle(proxy.proxy);
  return (await logger.waitFor("client connected", {}, 10_000, mark)).fields;
}

describe("warm spares", () => {
  it("an eager target keeps one ready from the start with no token asked for; the next cold login takes it, and it is replaced", async () => {
    const auth = countingIam();
    const { proxy, logger } = await start({ spares: 1, sparesAlways: true }, auth);
    await logger.waitFor("spare connection ready");
    expect(proxy.proxy.stats().spares).toBe(1);
    expect(auth.calls).toBe(0);

    const replaced = logger.mark();
    expect(await oneClient(proxy, logger)).toMatchObject({ spare: true, reused: false });
    expect(auth.calls).toBe(1);
    await logger.waitFor("spare connection ready", {}, 10_000, replaced);
    expect(proxy.proxy.stats().spares).toBe(1);
    expect(auth.calls).toBe(1);
  });

  it("is replaced before the server's authentication_timeout, and the replacement logs in", async () => {
    await world.pg.admin("ALTER SYSTEM SET authentication_timeout = '1s'");
    await world.pg.admin("SELECT pg_reload_conf()");
    try {
      const { proxy, logger } = await start({ spares: 1, sparesAlways: true, spareRefreshMs: 400 });
      await logger.waitFor("spare connection ready");
      // Three refreshes: well past the server's 1 s, so a spare kept any longer would have been dropped by it.
      for (let i = 0; i < 3; i++) await logger.waitFor("spare connection refreshed", {}, 10_000, logger.mark());
      expect(await oneClient(proxy, logger)).toMatchObject({ spare: true });
    } finally {
      await world.pg.admin("ALTER SYSTEM RESET authentication_timeout");
      await world.pg.admin("SELECT pg_reload_conf()");
    }
  });

  it("a lazy target opens none until a client comes", async () => {
    const { proxy, logger } = await start({ spares: 1, sparesAlways: false });
    expect(proxy.proxy.stats().spares).toBe(0);
    expect(await oneClient(proxy, logger)).toMatchObject({ spare: false });
    await logger.waitFor("spare connection ready");
    expect(await oneClient(proxy, logger)).toMatchObject({ reused: true });
  });

  it("stop() closes the spares", async () => {
    const { proxy, logger } = await start({ spares: 2, sparesAlways: true });
    await logger.waitFor("spare connection ready");
    await proxy.stop();
    running.splice(running.indexOf(proxy), 1);
    expect(proxy.proxy.stats().spares).toBe(0);
  });
});
