import type { Socket } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import type { PoolOptions, UpstreamAuth } from "@rdsd/proxy";
import { RecordingDialer, RecordingLogger, startProxyWorld, untilIdle, type ProxyWorld, type RunningProxy } from "./fixture.js";
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

/** A proxy whose every upstream connection (spares included) goes through a dialer that counts them. */
async function start(pool: Partial<PoolOptions> & { spares: number }, auth: UpstreamAuth = world.iam("iam_user")) {
  const logger = new RecordingLogger();
  const dialer = new RecordingDialer(world.pg.port);
  const proxy = await world.startProxy({ user: "iam_user", auth, defaultDatabase: "orders", logger, dialer, pool: { idle: 4, idleTimeoutMs: 60_000, ...pool } });
  running.push(proxy);
  return { proxy, logger, dialer };
}

/** A logged-in client that stays connected; what the proxy logged about its login. */
async function connect(proxy: RunningProxy, logger: RecordingLogger, applicationName = "spares-test") {
  const mark = logger.mark();
  const conn = await RawConnection.open(proxy.port);
  conn.send(startupMessage({ user: "someone", database: "orders", application_name: applicationName }));
  const greeting = await conn.framesUntil("Z");
  expect(greeting.map((f) => f.type)).not.toContain("E");
  const login = (await logger.waitFor("client connected", {}, 10_000, mark)).fields;
  return { conn, login };
}

/** Logs in, runs `select 1`, ends; what the proxy logged about the login. */
async function oneClient(proxy: RunningProxy, logger: RecordingLogger, applicationName?: string): Promise<Record<string, unknown>> {
  const { conn, login } = await connect(proxy, logger, applicationName);
  conn.send(query("SELECT 1"));
  expect(firstColumn(await conn.framesUntil("Z"))).toEqual(["1"]);
  await conn.terminate();
  return login;
}

describe("warm spares follow use", () => {
  it("none before the first client; from its arrival one is kept (no token asked for), and the next cold login takes it", async () => {
    const auth = countingIam();
    const { proxy, logger, dialer } = await start({ spares: 1 }, auth);
    // Started and listening: nothing dialed (start() itself used to open the spare at once).
    expect(dialer.dials).toBe(0);
    expect(proxy.proxy.stats().spares).toBe(0);

    const first = await connect(proxy, logger);
    expect(first.login).toMatchObject({ spare: false, reused: false });
    // The client's own dial went first: the spare is dialed after its login (a tunnel whose sessions carry one
    // connection each must not spend its first on a spare while the client waits for another).
    first.conn.send(query("SELECT client_port FROM pg_stat_activity WHERE pid = pg_backend_pid()"));
    const clientPort = Number(firstColumn(await first.conn.framesUntil("Z"))[0]);
    expect(((await dialer.dialed[0]!) as Socket).localPort).toBe(clientPort);
    await logger.waitFor("spare connection ready");
    expect(proxy.proxy.stats().spares).toBe(1);
    expect(auth.calls).toBe(1);

    // The first client still holds its server connection: this one logs in cold, on the spare.
    const replaced = logger.mark();
    expect(await oneClient(proxy, logger, "second")).toMatchObject({ spare: true, reused: false });
    await logger.waitFor("spare connection ready", {}, 10_000, replaced);
    expect(proxy.proxy.stats().spares).toBe(1);
    expect(auth.calls).toBe(2);
    await first.conn.terminate();
  });

  it("a client connected past idleTimeout keeps them, each replaced before the server's authentication_timeout", async () => {
    await world.pg.admin("ALTER SYSTEM SET authentication_timeout = '1s'");
    await world.pg.admin("SELECT pg_reload_conf()");
    try {
      const { proxy, logger } = await start({ spares: 1, idleTimeoutMs: 500, spareRefreshMs: 300 });
      const held = await connect(proxy, logger);
      await logger.waitFor("spare connection ready");
      // Five refreshes of 300 ms: past idleTimeout (500 ms) and the server's 1 s, with a client connected throughout.
      for (let i = 0; i < 5; i++) await logger.waitFor("spare connection refreshed", {}, 10_000, logger.mark());
      expect(proxy.proxy.stats().spares).toBe(1);
      expect(await oneClient(proxy, logger, "second")).toMatchObject({ spare: true });
      await held.conn.terminate();
    } finally {
      await world.pg.admin("ALTER SYSTEM RESET authentication_timeout");
      await world.pg.admin("SELECT pg_reload_conf()");
    }
  });

  it("idleTimeout after the last client left the spare is closed and not replaced; the next client logs in cold and starts them again", async () => {
    const { proxy, logger, dialer } = await start({ spares: 1, idleTimeoutMs: 600, spareRefreshMs: 200 });
    const first = await connect(proxy, logger);
    await logger.waitFor("spare connection ready");
    await first.conn.terminate();
    await untilIdle(proxy.proxy);

    await logger.waitFor("no client for the pool's idleTimeout: warm spares closed until the next client", { idleTimeout: "600 ms" });
    expect(proxy.proxy.stats().spares).toBe(0);
    // The spare and the parked connection (closed at the same idleTimeout) are gone upstream.
    await expect.poll(() => dialer.open, { timeout: 10_000 }).toBe(0);
    const dialed = dialer.dials;
    // Nothing to await here: the claim is that nothing happens. Three refresh periods would each have opened a spare.
    await sleep(3 * 200);
    expect(dialer.dials).toBe(dialed);

    const again = logger.mark();
    expect(await oneClient(proxy, logger, "after-idle")).toMatchObject({ spare: false, reused: false });
    await logger.waitFor("spare connection ready", {}, 10_000, again);
    expect(proxy.proxy.stats().spares).toBe(1);
  });

  it("spares: 0 never opens one", async () => {
    const { proxy, logger, dialer } = await start({ spares: 0 });
    expect(await oneClient(proxy, logger)).toMatchObject({ spare: false });
    expect(await oneClient(proxy, logger, "second")).toMatchObject({ spare: false, reused: false });
    // One upstream connection per client: nothing else was dialed.
    expect(dialer.dials).toBe(2);
    expect(logger.named("spare connection ready")).toHaveLength(0);
    expect(proxy.proxy.stats().spares).toBe(0);
  });

  it("none over a tunnel whose every stream costs a session (an SSM agent too old to multiplex)", async () => {
    const { proxy, logger, dialer } = await start({ spares: 1 });
    dialer.singleUseTunnel = true;
    const held = await connect(proxy, logger);
    expect(held.login).toMatchObject({ spare: false });
    expect(await oneClient(proxy, logger, "second")).toMatchObject({ spare: false, reused: false });
    expect(dialer.dials).toBe(2);
    expect(proxy.proxy.stats().spares).toBe(0);
    await held.conn.terminate();
  });

  it("stop() closes the spares", async () => {
    const { proxy, logger, dialer } = await start({ spares: 2 });
    await oneClient(proxy, logger);
    await logger.waitFor("spare connection ready");
    await proxy.stop();
    running.splice(running.indexOf(proxy), 1);
    expect(proxy.proxy.stats().spares).toBe(0);
    await expect.poll(() => dialer.open, { timeout: 10_000 }).toBe(0);
  });
});
