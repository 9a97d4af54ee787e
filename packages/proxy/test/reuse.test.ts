import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import pg from "pg";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { decodeBackendKeyData, decodeErrorFields, decodeParameterStatus, frame, type BackendFrame } from "@rdsd/pg-wire";
import { ProxyError, type TargetProxyOptions } from "@rdsd/proxy";
import { RecordingDialer, RecordingLogger, startProxyWorld, untilIdle, type ProxyWorld, type RunningProxy } from "./fixture.js";
import { conninfo, psql, runClient } from "./libpq.js";
import { cancelRequest, firstColumn, query, RawConnection, startupMessage } from "./raw.js";

// IAM tokens with a frozen clock, as in clients.test.ts: the right token is known in advance.
const FROZEN_TIME = new Date(Math.floor(Date.now() / 1000) * 1000);
const POOL = { idle: 8, idleTimeoutMs: 60_000 };

let world: ProxyWorld;
let logger: RecordingLogger;
/** iam_user over IAM with reuse on. */
let pooled: RunningProxy;
/** The same without reuse: what a fresh connection gets. */
let fresh: RunningProxy;

beforeAll(async () => {
  world = await startProxyWorld();
  vi.useFakeTimers({ toFake: ["Date"], now: FROZEN_TIME });
  await world.pg.admin(`ALTER ROLE iam_user PASSWORD '${await world.expectedToken("iam_user")}'`);
  await world.pg.admin("CREATE ROLE reader NOLOGIN; GRANT reader TO iam_user");
  logger = new RecordingLogger();
  pooled = await world.startProxy({ user: "iam_user", auth: world.iam("iam_user"), defaultDatabase: "orders", logger, pool: POOL });
  fresh = await world.startProxy({ user: "iam_user", auth: world.iam("iam_user"), defaultDatabase: "orders" });
});

afterAll(async () => {
  vi.useRealTimers();
  await world?.close();
});

afterEach(async () => {
  expect(RawConnection.destroyAll()).toBe(0);
  await Promise.all([untilIdle(pooled.proxy), untilIdle(fresh.proxy)]);
  // Every test starts with nothing parked, so `parked` counts only its own.
  pooled.proxy.closeIdle();
});

/** Each test names its own application: parked connections of one test never match another's startup. */
let testNumber = 0;
const appName = () => `reuse-test-${++testNumber}`;

interface Session {
  conn: RawConnection;
  pid: number;
  key: Buffer;
  parameters: Map<string, string>;
  /** Runs one simple query; the frames up to ReadyForQuery. */
  run(sql: string): Promise<BackendFrame[]>;
  /** The first column of a one-statement query's rows; fails on an ErrorResponse. */
  value(sql: string): Promise<string | undefined>;
  /** Terminate, then the close. */
  end(): Promise<void>;
}

async function open(port: number, application: string, extra: Record<string, string> = {}): Promise<Session> {
  const conn = await RawConnection.open(port);
  conn.send(startupMessage({ user: "someone", database: "orders", application_name: application, ...extra }));
  const greeting = await conn.framesUntil("Z");
  const parameters = new Map<string, string>();
  let key: { processId: number; secretKey: Buffer } | undefined;
  for (const f of greeting) {
    if (f.type === "S") {
      const p = decodeParameterStatus(f.body)!;
      parameters.set(p.name, p.value);
    } else if (f.type === "K") {
      const k = decodeBackendKeyData(f.body);
      if (typeof k !== "string") key = k;
    } else if (f.type === "E") throw new Error(decodeErrorFields(f.body).message);
  }
  if (!key) throw new Error("no BackendKeyData");
  const run = async (sql: string) => {
    conn.send(query(sql));
    return conn.framesUntil("Z");
  };
  return {
    conn,
    pid: key.processId,
    key: key.secretKey,
    parameters,
    run,
    async value(sql) {
      const frames = await run(sql);
      const error = frames.find((f) => f.type === "E");
      if (error) throw new Error(`${sql}: ${decodeErrorFields(error.body).message}`);
      return firstColumn(frames)[0];
    },
    end: () => conn.terminate(),
  };
}

/** Ends a session cleanly and waits for its backend to be reset and parked. */
async function endAndPark(session: Session): Promise<void> {
  const parked = logger.waitFor("server connection parked", { backendPid: session.pid }, 10_000, logger.mark());
  await session.end();
  await parked;
}

/** Waits (bounded: no event exists) for a backend to leave pg_stat_activity. */
async function untilBackendGone(pid: number): Promise<void> {
  const deadline = performance.now() + 10_000;
  while ((await world.pg.admin("SELECT 1 FROM pg_stat_activity WHERE pid = $1", [pid])).rows.length > 0) {
    if (performance.now() > deadline) throw new Error(`backend ${pid} still exists`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

describe("a reused backend keeps nothing of its previous client", () => {
  it("SET, temp table, LISTEN, advisory lock, prepared statements (SQL and protocol), SET ROLE", async () => {
    const app = appName();
    const first = await open(pooled.port, app);
    for (const sql of [
      "SET statement_timeout = '123s'",
      "SET search_path = nowhere, public",
      "CREATE TEMP TABLE scratch (x int)",
      "LISTEN news",
      "SELECT pg_advisory_lock(4242)",
      "PREPARE by_sql AS SELECT 1",
      "SET ROLE reader",
    ]) {
      await first.value(sql);
    }
    first.conn.send(frame("P", Buffer.from("by_protocol\0select 2\0\0\0", "latin1")), frame("S", Buffer.alloc(0)));
    expect((await first.conn.framesUntil("Z")).map((f) => f.type)).toEqual(["1", "Z"]);
    expect(await first.value("SELECT count(*) FROM pg_prepared_statements")).toBe("2");
    expect(await first.value("SELECT current_user")).toBe("reader");
    await endAndPark(first);

    const second = await open(pooled.port, app);
    expect(second.pid).toBe(first.pid);
    expect(await second.value("SHOW statement_timeout")).toBe("0");
    expect(await second.value("SHOW search_path")).toBe('"$user", public');
    expect(await second.value("SELECT count(*) FROM pg_class WHERE relname = 'scratch'")).toBe("0");
    expect(await second.value("SELECT count(*) FROM pg_listening_channels()")).toBe("0");
    expect(await second.value("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'")).toBe("0");
    expect(await second.value("SELECT count(*) FROM pg_prepared_statements")).toBe("0");
    expect(await second.value("SELECT current_user")).toBe("iam_user");
    // A notification on the first client's channel does not reach the second (it would come before ReadyForQuery).
    await world.pg.admin("NOTIFY news, 'for the first client only'");
    expect((await second.run("SELECT 1")).map((f) => f.type)).not.toContain("A");
    await second.end();
  });

  it("the next client's ParameterStatus values are a fresh connection's, after the first changed DateStyle and TimeZone", async () => {
    const app = appName();
    const first = await open(pooled.port, app);
    const changed = await first.run("SET DateStyle = 'German, DMY'; SET TimeZone = 'Pacific/Auckland'");
    expect(changed.filter((f) => f.type === "S").map((f) => decodeParameterStatus(f.body)!.name)).toEqual(["DateStyle", "TimeZone"]);
    await endAndPark(first);

    const second = await open(pooled.port, app);
    expect(second.pid).toBe(first.pid);
    const baseline = await open(fresh.port, app);
    expect(Object.fromEntries(second.parameters)).toEqual(Object.fromEntries(baseline.parameters));
    expect(second.parameters.get("DateStyle")).not.toBe("German, DMY");
    expect(await second.value("SHOW TimeZone")).toBe(await baseline.value("SHOW TimeZone"));
    await Promise.all([second.end(), baseline.end()]);
  });

  it("a client that sent a CancelRequest with the previous client's key cancels nothing", async () => {
    const app = appName();
    const first = await open(pooled.port, app);
    await endAndPark(first);
    const second = await open(pooled.port, app);
    expect(second.pid).toBe(first.pid);
    expect(second.key.equals(first.key)).toBe(false);

    second.conn.send(query("SELECT pg_sleep(1.5)"));
    await untilSleeping(second.pid);
    const dropped = logger.mark();
    const stale = await RawConnection.open(pooled.port);
    stale.send(cancelRequest(first.pid, first.key));
    expect((await stale.rest()).length).toBe(0);
    await logger.waitFor("cancel request for an unknown session dropped", {}, 10_000, dropped);
    const answer = await second.conn.framesUntil("Z");
    expect(answer.map((f) => f.type)).not.toContain("E");

    // The second client's own key does cancel.
    second.conn.send(query("SELECT pg_sleep(60)"));
    await untilSleeping(second.pid);
    const own = await RawConnection.open(pooled.port);
    own.send(cancelRequest(second.pid, second.key));
    await own.rest();
    const cancelled = await second.conn.framesUntil("Z");
    expect(decodeErrorFields(cancelled.find((f) => f.type === "E")!.body).code).toBe("57014");
    // A backend that was sent a cancel is not handed on (the signal could land in the next client's query).
    await second.end();
    await untilBackendGone(second.pid);
  });
});

describe("unclean ends are not reused", () => {
  it("a client that ends inside a transaction block", async () => {
    const app = appName();
    const first = await open(pooled.port, app);
    await first.value("BEGIN");
    await first.value("CREATE TABLE left_open (x int)");
    await first.end();
    await untilBackendGone(first.pid);
    expect(pooled.proxy.stats().parked).toBe(0);
    // The transaction was not committed by anyone.
    expect((await world.pg.admin("SELECT to_regclass('public.left_open') AS t")).rows[0].t).toBeNull();
  });

  it("a client killed mid-query", async () => {
    const app = appName();
    const first = await open(pooled.port, app);
    first.conn.send(query("SELECT pg_sleep(30)"));
    await untilSleeping(first.pid);
    await first.conn.reset();
    await untilIdle(pooled.proxy);
    expect(pooled.proxy.stats().parked).toBe(0);
    const second = await open(pooled.port, app);
    expect(second.pid).not.toBe(first.pid);
    await second.end();
    await world.pg.admin("SELECT pg_terminate_backend($1)", [first.pid]);
  });

  it("a client killed mid-COPY", async () => {
    const app = appName();
    const first = await open(pooled.port, app);
    await first.value("CREATE TABLE copy_target (x int)");
    first.conn.send(query("COPY copy_target FROM STDIN"));
    expect((await first.conn.frame()).type).toBe("G");
    first.conn.send(frame("d", Buffer.from("1\n2\n")));
    await first.conn.reset();
    await untilBackendGone(first.pid);
    expect(pooled.proxy.stats().parked).toBe(0);
    const check = await open(fresh.port, app);
    expect(await check.value("SELECT count(*) FROM copy_target")).toBe("0");
    await check.end();
  });
});

describe("matching startup parameters", () => {
  it("a client with other startup parameters gets its own backend; one with the same gets the parked one", async () => {
    const app = appName();
    const first = await open(pooled.port, app);
    await endAndPark(first);
    const other = await open(pooled.port, app, { DateStyle: "SQL, DMY" });
    expect(other.pid).not.toBe(first.pid);
    expect(await other.value("SHOW DateStyle")).toBe("SQL, DMY");
    const same = await open(pooled.port, app);
    expect(same.pid).toBe(first.pid);
    expect(pooled.proxy.stats().parked).toBe(0);
    await Promise.all([other.end(), same.end()]);
  });
});

describe("clients", () => {
  it("psql twice: the second runs on the first's backend", async () => {
    const connection = conninfo({ host: "127.0.0.1", port: pooled.port, user: "someone", dbname: "orders", sslmode: "disable", application_name: appName() });
    const mark = logger.mark();
    const one = await psql(connection, ["SELECT pg_backend_pid()"]);
    expect(one.code).toBe(0);
    const pid = Number(one.stdout.toString().trim());
    await logger.waitFor("server connection parked", { backendPid: pid }, 10_000, mark);
    const two = await psql(connection, ["SELECT pg_backend_pid()"]);
    expect(Number(two.stdout.toString().trim())).toBe(pid);
  });

  it("node-postgres pools: a burst of parallel opens, ended, then another burst on the same backends", async () => {
    const app = appName();
    const burst = async () => {
      const pool = new pg.Pool({ host: "127.0.0.1", port: pooled.port, user: "someone", database: "orders", application_name: app, max: 5 });
      const clients = await Promise.all(Array.from({ length: 5 }, () => pool.connect()));
      const pids = await Promise.all(clients.map(async (c) => (await c.query("SELECT pg_backend_pid() AS pid")).rows[0].pid as number));
      for (const c of clients) c.release();
      return { pool, pids };
    };
    const first = await burst();
    const parked = first.pids.map((pid) => logger.waitFor("server connection parked", { backendPid: pid }, 10_000, logger.mark()));
    await first.pool.end();
    await Promise.all(parked);
    const second = await burst();
    expect([...second.pids].sort()).toEqual([...first.pids].sort());
    await second.pool.end();
  });

  it("pgbench -C (a new connection per transaction) runs on reused backends", async () => {
    const { run, connected } = await pgbenchConnectPerTransaction(2, 40);
    expect(run.code).toBe(0);
    expect(run.stdout.toString()).toContain("number of transactions actually processed: 80/80");
    expect(connected.length).toBeGreaterThanOrEqual(80); // pgbench also opens one to start with
    expect(connected.filter((e) => e.fields.reused === true).length).toBeGreaterThan(0);
  });

  it("pgbench -C with one client: every connection after the first waits for the last one's reset instead of logging in", async () => {
    const { run, connected } = await pgbenchConnectPerTransaction(1, 30);
    expect(run.code).toBe(0);
    // pgbench's own first connection stays open through the run; the first transaction's logs in too.
    expect(connected.filter((e) => e.fields.reused !== true).length).toBeLessThanOrEqual(2);
    expect(connected.filter((e) => e.fields.reused === true).length).toBeGreaterThanOrEqual(29);
  });
});

describe("stopping", () => {
  it("stop() closes parked backends, and status counts them until then", async () => {
    const extra = await world.startProxy({ user: "iam_user", auth: world.iam("iam_user"), defaultDatabase: "orders", logger, pool: POOL });
    const first = await open(extra.port, appName());
    await endAndPark(first);
    expect(extra.proxy.stats().parked).toBe(1);
    await extra.stop();
    expect(extra.proxy.stats().parked).toBe(0);
    await untilBackendGone(first.pid);
  });
});

/** A dialer whose streams a test can end as a dropped SSM tunnel ends them. */
describe("the tunnel drops mid-session", () => {
  it("an idle client reads a FATAL naming the tunnel, at the message boundary, then the close", async () => {
    const dialer = new RecordingDialer(world.pg.port);
    const extra = await world.startProxy({ user: "iam_user", auth: world.iam("iam_user"), defaultDatabase: "orders", dialer, pool: POOL });
    const session = await open(extra.port, appName());
    expect(await session.value("SELECT 1")).toBe("1");
    const problem = new ProxyError("the tunnel's SSM session s-0test was closed", "reconnect: rdsd opens a new session");
    dialer.streams[0]!.destroy(problem);
    const error = await session.conn.error();
    expect(error).toMatchObject({
      severity: "FATAL",
      code: "08006",
      message: "the SSM tunnel to orders-dev dropped: the tunnel's SSM session s-0test was closed",
    });
    expect(error.hint).toContain("reconnect: rdsd opens a new session");
    expect((await session.conn.rest()).length).toBe(0);
    expect(extra.proxy.stats().parked).toBe(0);
    await extra.stop();
  });
});

/**
 * A dialer whose check of a kept stream (Dialer.usable) waits until the test answers, as a tunnel checking its
 * session after a sleep; once answered, later questions get the answer at once.
 */
class CheckingDialer extends RecordingDialer {
  asked = 0;
  private answered: boolean | undefined;
  private readonly waiting: Array<(usable: boolean) => void> = [];

  usable(): boolean | Promise<boolean> {
    this.asked++;
    if (this.answered !== undefined) return this.answered;
    return new Promise((resolve) => this.waiting.push(resolve));
  }

  answer(usable: boolean): void {
    this.answered = usable;
    for (const resolve of this.waiting.splice(0)) resolve(usable);
  }
}

/** A proxy on a CheckingDialer with this pool, for `body`; stopped whatever happens. */
async function withCheckingProxy(pool: TargetProxyOptions["pool"], body: (extra: RunningProxy, dialer: CheckingDialer) => Promise<void>): Promise<void> {
  const dialer = new CheckingDialer(world.pg.port);
  const extra = await world.startProxy({ user: "iam_user", auth: world.iam("iam_user"), defaultDatabase: "orders", dialer, logger, pool });
  try {
    await body(extra, dialer);
  } finally {
    await extra.stop();
  }
}

describe("a restart while a kept connection's carrier is being checked", () => {
  it("a parked connection vouched for after the restart is closed, not handed out: the client logs in afresh", async () => {
    await withCheckingProxy(POOL, async (extra, dialer) => {
      const app = appName();
      const first = await open(extra.port, app);
      await endAndPark(first);
      const second = open(extra.port, app);
      await vi.waitFor(() => expect(dialer.asked).toBe(1), { timeout: 10_000 });
      // The parked connection is out of the pool while its check runs; the restart must reach it all the same.
      extra.proxy.closeIdle();
      dialer.answer(true);
      const session = await second;
      expect(session.pid).not.toBe(first.pid);
      expect(await session.value("SELECT 1")).toBe("1");
      await session.end();
      await untilBackendGone(first.pid);
    });
  });

  it("a warm spare vouched for after the restart is closed, not used: the client logs in on a fresh connection", async () => {
    await withCheckingProxy({ idle: 0, idleTimeoutMs: 60_000, spares: 1 }, async (extra, dialer) => {
      const first = await open(extra.port, appName());
      await first.end();
      await vi.waitFor(() => expect(extra.proxy.stats().spares).toBe(1), { timeout: 10_000 });
      const spareStream = dialer.streams.at(-1)!;
      const second = open(extra.port, appName());
      await vi.waitFor(() => expect(dialer.asked).toBe(1), { timeout: 10_000 });
      extra.proxy.closeIdle();
      dialer.answer(true);
      const session = await second;
      expect(await session.value("SELECT 1")).toBe("1");
      expect(spareStream.destroyed).toBe(true);
      await session.end();
    });
  });
});

describe("a client that leaves while its parked connection's carrier is being checked", () => {
  it.each([{ verdict: true }, { verdict: false }])("the check answers $verdict: the parked connection is closed and no login starts for nobody", async ({ verdict }) => {
    await withCheckingProxy(POOL, async (extra, dialer) => {
      const app = appName();
      const first = await open(extra.port, app);
      await endAndPark(first);
      const dials = dialer.dials;
      const leaving = await RawConnection.open(extra.port);
      leaving.send(startupMessage({ user: "someone", database: "orders", application_name: app }));
      await vi.waitFor(() => expect(dialer.asked).toBe(1), { timeout: 10_000 });
      leaving.destroy();
      await untilIdle(extra.proxy);
      dialer.answer(verdict);
      // Before, a vouched-for connection went to the relay of a client already gone and stayed open.
      await untilBackendGone(first.pid);
      expect(extra.proxy.stats().parked).toBe(0);
      expect(dialer.dials).toBe(dials);
    });
  });
});

describe("the server ends a parked connection while its carrier is being checked", () => {
  it("it is not handed out (the client would read only the server's FATAL): the client logs in afresh", async () => {
    await withCheckingProxy(POOL, async (extra, dialer) => {
      const app = appName();
      const first = await open(extra.port, app);
      await endAndPark(first);
      const parkedStream = dialer.streams[0]!;
      const second = open(extra.port, app);
      await vi.waitFor(() => expect(dialer.asked).toBe(1), { timeout: 10_000 });
      // A failover, an idle-session timeout or a DBA ends the backend while the check runs (after a sleep, the
      // server's FATAL arrives with the tunnel's first messages). Before, nothing read the connection then.
      await world.pg.admin("SELECT pg_terminate_backend($1)", [first.pid]);
      await vi.waitFor(() => expect(parkedStream.destroyed).toBe(true), { timeout: 10_000 });
      dialer.answer(true);
      const session = await second;
      expect(session.pid).not.toBe(first.pid);
      expect(await session.value("SELECT 1")).toBe("1");
      await session.end();
    });
  });
});

/** pgbench -C (a new connection per transaction) running SELECT 1 through the pooled proxy; the proxy's "client connected" entries during it. */
async function pgbenchConnectPerTransaction(clients: number, transactions: number) {
  const script = join(world.dir.path, "select-1.sql");
  await writeFile(script, "SELECT 1;\n");
  const connection = conninfo({ host: "127.0.0.1", port: pooled.port, user: "someone", dbname: "orders", sslmode: "disable", application_name: appName() });
  const mark = logger.mark();
  const run = await runClient("pgbench", ["-n", "-C", "-t", String(transactions), "-c", String(clients), "-f", script, connection], { timeoutMs: 50_000 });
  return { run, connected: logger.entries.slice(mark).filter((e) => e.message === "client connected") };
}

async function untilSleeping(pid: number): Promise<void> {
  const deadline = performance.now() + 10_000;
  for (;;) {
    const { rows } = await world.pg.admin("SELECT 1 FROM pg_stat_activity WHERE state = 'active' AND wait_event = 'PgSleep' AND pid = $1", [pid]);
    if (rows.length === 1) return;
    if (performance.now() > deadline) throw new Error(`backend ${pid} is not sleeping within 10 s`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
