import { createHash, randomBytes } from "node:crypto";
import { createReadStream, createWriteStream } from "node:fs";
import { open, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { finished as streamFinished } from "node:stream/promises";
import tls from "node:tls";
import pg from "pg";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { freePort } from "@rdsd/testkit";
import { RecordingLogger, startProxyWorld, untilIdle, type ProxyWorld, type RunningProxy } from "./fixture.js";
import { conninfo, finished, psql, runClient, startClient } from "./libpq.js";
import { cancelRequest, RawConnection, sslRequest } from "./raw.js";

// IAM tokens are SigV4 presigned URLs: with a frozen clock and fixed keys, the right token is known in advance
// and becomes iam_user's password. Frozen at the real time: OpenSSL checks certificates against the real clock.
const FROZEN_TIME = new Date(Math.floor(Date.now() / 1000) * 1000);

type SslMode = "disable" | "prefer" | "require" | "verify-full";
const SSL_MODES: SslMode[] = ["disable", "prefer", "require", "verify-full"];

let world: ProxyWorld;
let logger: RecordingLogger;
/** iam_user over IAM, default database orders, local TLS from the test CA. */
let proxy: RunningProxy;

beforeAll(async () => {
  world = await startProxyWorld();
  vi.useFakeTimers({ toFake: ["Date"], now: FROZEN_TIME });
  await world.pg.admin(`ALTER ROLE iam_user PASSWORD '${await world.expectedToken("iam_user")}'`);
  logger = new RecordingLogger();
  proxy = await world.startProxy({ user: "iam_user", auth: world.iam("iam_user"), defaultDatabase: "orders", logger });
});

afterAll(async () => {
  vi.useRealTimers();
  await world?.close();
});

// No test may leave a client connection behind; a failed test's are closed, so the next test starts clean.
const pgClients = new Set<pg.Client>();
afterEach(async () => {
  const left = [...pgClients];
  pgClients.clear();
  await Promise.all(left.map((c) => c.end().catch(() => {})));
  expect(RawConnection.destroyAll()).toBe(0);
  await untilIdle(proxy.proxy);
});

/** A node-postgres client closed after the test if the test did not. */
function pgClient(config: pg.ClientConfig): pg.Client {
  const client = new pg.Client(config);
  pgClients.add(client);
  client.once("end", () => pgClients.delete(client));
  return client;
}

/** libpq settings for the proxy: the user is a local name, the proxy logs in as iam_user. */
function libpq(mode: SslMode, extra: Record<string, string | number> = {}, port = proxy.port): string {
  const host = mode === "verify-full" ? "localhost" : "127.0.0.1";
  return conninfo({
    host,
    port,
    user: "someone",
    dbname: "orders",
    sslmode: mode,
    ...(mode === "verify-full" ? { sslrootcert: world.localCaPath } : {}),
    connect_timeout: 10,
    ...extra,
  });
}

/** What the proxy logged when the login for this backend pid completed (it records whether the client used TLS). */
async function proxyView(backendPid: number): Promise<{ tls: unknown }> {
  const entry = await logger.waitFor("client connected", { backendPid });
  return { tls: entry.fields.tls };
}

async function connectPg(config: pg.ClientConfig = {}): Promise<pg.Client> {
  const client = pgClient({ host: "127.0.0.1", port: proxy.port, user: "someone", database: "orders", ssl: false, ...config });
  await client.connect();
  return client;
}

/** node-postgres keeps its BackendKeyData and socket on the client, untyped. */
function internals(client: pg.Client): { processID: number; secretKey: number; stream: unknown } {
  const c = client as unknown as { processID: number; secretKey: number; connection: { stream: unknown } };
  return { processID: c.processID, secretKey: c.secretKey, stream: c.connection.stream };
}

const SSL_LINE = /^SSL connection \(protocol: TLSv1\.[23],/m;
const UPSTREAM_TLS_SQL = "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()";

describe("sslmode: the client side is TLS exactly when asked, the upstream always is", () => {
  it.each(SSL_MODES)("psql, sslmode=%s", async (mode) => {
    const run = await psql(libpq(mode), ["\\conninfo", UPSTREAM_TLS_SQL, "SELECT pg_backend_pid()"]);
    expect(run.stderr).toBe("");
    expect(run.code).toBe(0);
    const out = run.stdout.toString("utf8");
    const clientTls = mode !== "disable";
    expect(SSL_LINE.test(out)).toBe(clientTls);
    const [upstreamTls, pid] = out.trim().split("\n").slice(-2);
    expect(upstreamTls).toBe("t");
    expect(await proxyView(Number(pid))).toEqual({ tls: clientTls });
  });

  it.each(SSL_MODES)("node-postgres, sslmode=%s (libpq-compatible connection string)", async (mode) => {
    const params = new URLSearchParams({ uselibpqcompat: "true", sslmode: mode });
    if (mode === "verify-full") params.set("sslrootcert", world.localCaPath);
    const host = mode === "verify-full" ? "localhost" : "127.0.0.1";
    const client = pgClient({ connectionString: `postgresql://someone@${host}:${proxy.port}/orders?${params}` });
    await client.connect();
    const { stream, processID } = internals(client);
    const clientTls = mode !== "disable";
    expect(stream instanceof tls.TLSSocket).toBe(clientTls);
    if (mode === "verify-full") expect((stream as tls.TLSSocket).authorized).toBe(true);
    expect((await client.query(UPSTREAM_TLS_SQL)).rows[0].ssl).toBe(true);
    expect(await proxyView(processID)).toEqual({ tls: clientTls });
    await client.end();
  });

  it("node-postgres with sslnegotiation=direct: TLS from the first byte, ALPN postgresql, verify-full", async () => {
    const params = new URLSearchParams({ uselibpqcompat: "true", sslmode: "verify-full", sslrootcert: world.localCaPath, sslnegotiation: "direct" });
    const client = pgClient({ connectionString: `postgresql://someone@localhost:${proxy.port}/orders?${params}` });
    await client.connect();
    const { stream, processID } = internals(client);
    expect(stream instanceof tls.TLSSocket).toBe(true);
    expect((stream as tls.TLSSocket).authorized).toBe(true);
    expect((stream as tls.TLSSocket).alpnProtocol).toBe("postgresql");
    expect((await client.query(UPSTREAM_TLS_SQL)).rows[0].ssl).toBe(true);
    expect(await proxyView(processID)).toEqual({ tls: true });
    await client.end();
  });

  it.each(SSL_MODES)("pgbench, sslmode=%s", async (mode) => {
    // The script fails (division by zero, pgbench exits non-zero) unless the server sees TLS.
    const script = join(world.dir.path, "upstream-tls.sql");
    await writeFile(script, "SELECT 1 / (CASE WHEN ssl THEN 1 ELSE 0 END) FROM pg_stat_ssl WHERE pid = pg_backend_pid();\n");
    const logins = logger.named("client connected").length;
    const run = await runClient("pgbench", ["-n", "-f", script, "-t", "3", "-c", "2", libpq(mode)]);
    expect(run.stderr).not.toMatch(/error|fatal/i);
    expect(run.code).toBe(0);
    expect(run.stdout.toString()).toContain("number of transactions actually processed: 6/6");
    const sessions = logger.named("client connected").slice(logins);
    expect(sessions.length).toBeGreaterThanOrEqual(2);
    expect(sessions.every((e) => e.fields.tls === (mode !== "disable"))).toBe(true);
  });

  describe("a proxy without local TLS", () => {
    let plainOnly: RunningProxy;
    beforeAll(async () => {
      plainOnly = await world.startProxy({ user: "iam_user", auth: world.iam("iam_user"), defaultDatabase: "orders", clientTls: null, logger });
    });
    afterAll(async () => {
      await plainOnly.stop();
    });

    it("serves sslmode=prefer unencrypted", async () => {
      const run = await psql(libpq("prefer", {}, plainOnly.port), ["\\conninfo", UPSTREAM_TLS_SQL]);
      expect(run.code).toBe(0);
      const out = run.stdout.toString();
      expect(out).toContain(`You are connected to database "orders" as user "someone" on host "127.0.0.1" at port "${plainOnly.port}"`);
      expect(SSL_LINE.test(out)).toBe(false);
      expect(out.trim().split("\n").at(-1)).toBe("t");
    });

    it("fails sslmode=require with libpq's clear message", async () => {
      const run = await psql(libpq("require", {}, plainOnly.port), ["SELECT 1"]);
      expect(run.code).toBe(2);
      expect(run.stderr).toContain("server does not support SSL, but SSL was required");
      await untilIdle(plainOnly.proxy);
    });
  });
});

describe("listening on 127.0.0.1 and ::1", () => {
  it("serves psql on both, with verify-full against localhost", async () => {
    let dual: RunningProxy | undefined;
    // freePort() checks 127.0.0.1 only; the port may be taken on ::1 (or by then): try a few.
    for (let attempt = 0; !dual; attempt++) {
      const port = await freePort();
      try {
        dual = await world.startProxy({ user: "iam_user", auth: world.iam("iam_user"), defaultDatabase: "orders", listen: [{ host: "127.0.0.1", port }, { host: "::1", port }] });
      } catch (err) {
        if (attempt >= 4 || !String(err).includes("already in use")) throw err;
      }
    }
    const port = dual.port;
    expect(dual.proxy.addresses()).toEqual([
      { host: "127.0.0.1", port },
      { host: "::1", port },
    ]);
    // hostaddr picks the address, host stays "localhost" for certificate verification: both halves of "localhost".
    for (const address of ["127.0.0.1", "::1"]) {
      const run = await psql(libpq("verify-full", { hostaddr: address }, port), ["\\conninfo", "SELECT current_database()"]);
      expect(run.stderr).toBe("");
      const out = run.stdout.toString();
      expect(out).toContain(`on host "localhost" (address "${address}") at port "${port}"`);
      expect(SSL_LINE.test(out)).toBe(true);
      expect(out.trim().split("\n").at(-1)).toBe("orders");
    }
    // And as clients usually write it: host=localhost, whatever this machine resolves it to; and the IPv6 literal.
    for (const host of ["localhost", "::1"]) {
      const run = await psql(libpq("verify-full", { host }, port), ["SELECT 1"]);
      expect(run.stderr).toBe("");
      expect(run.stdout.toString().trim()).toBe("1");
    }
    await dual.stop();
  });
});

describe("startup parameters reach the server unchanged", () => {
  it("client_encoding LATIN1: the server converts, and a LATIN1 byte round-trips", async () => {
    // "café" in LATIN1 is 63 61 66 e9: the server must read e9 as é (U+00E9) and send e9 back.
    const sql = Buffer.concat([Buffer.from("SHOW client_encoding;\nSELECT 'caf"), Buffer.from([0xe9]), Buffer.from("' AS w, ascii(right('caf"), Buffer.from([0xe9]), Buffer.from("', 1));\n")]);
    const run = await runClient("psql", ["-X", "-w", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", libpq("require")], { input: sql, env: { PGCLIENTENCODING: "LATIN1" } });
    expect(run.stderr).toBe("");
    expect(run.stdout).toEqual(Buffer.concat([Buffer.from("LATIN1\ncaf"), Buffer.from([0xe9]), Buffer.from("|233\n")]));
  });

  it("application_name is what pg_stat_activity shows", async () => {
    const run = await psql(libpq("prefer", { application_name: "rdsd clients test" }), ["SELECT application_name FROM pg_stat_activity WHERE pid = pg_backend_pid()"]);
    expect(run.stderr).toBe("");
    expect(run.stdout.toString().trim()).toBe("rdsd clients test");
  });

  it("options='-c search_path=foo' sets the session's search_path", async () => {
    const run = await psql(libpq("prefer", { options: "-c search_path=foo" }), ["SHOW search_path"]);
    expect(run.stderr).toBe("");
    expect(run.stdout.toString().trim()).toBe("foo");
  });

  it("no database named: the target's default database; a named one is used", async () => {
    const unnamed = conninfo({ host: "127.0.0.1", port: proxy.port, user: "someone", sslmode: "prefer" });
    const run = await psql(unnamed, ["SELECT current_database(), current_user"]);
    expect(run.stderr).toBe("");
    expect(run.stdout.toString().trim()).toBe("orders|iam_user");

    const named = await psql(libpq("prefer", { dbname: "postgres" }), ["SELECT current_database()"]);
    expect(named.stdout.toString().trim()).toBe("postgres");
  });

  it("a database that does not exist: the server's FATAL reaches psql as it was sent", async () => {
    const run = await psql(libpq("prefer", { dbname: "no_such_db" }), ["SELECT 1"]);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain('FATAL:  database "no_such_db" does not exist');
  });
});

/** Resolves once the backend runs pg_sleep (no event exists: polled with a deadline). */
async function untilSleeping(match: { pid?: number; query?: string }, deadlineMs = 10_000): Promise<number> {
  const deadline = performance.now() + deadlineMs;
  for (;;) {
    const { rows } = await world.pg.admin(
      "SELECT pid FROM pg_stat_activity WHERE state = 'active' AND wait_event = 'PgSleep' AND ($1::int IS NULL OR pid = $1) AND ($2::text IS NULL OR query = $2)",
      [match.pid ?? null, match.query ?? null],
    );
    if (rows.length === 1) return rows[0].pid as number;
    if (performance.now() > deadline) throw new Error(`no sleeping backend ${JSON.stringify(match)} within ${deadlineMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** Starts pg_sleep(60) on a client; the promise settles with the error that ends it. */
async function sleepOn(client: pg.Client): Promise<{ ended: Promise<unknown>; settled: () => boolean }> {
  let done = false;
  const ended = client.query("SELECT pg_sleep(60)").then(
    () => {
      done = true;
      return new Error("pg_sleep(60) was not cancelled");
    },
    (err: unknown) => {
      done = true;
      return err;
    },
  );
  await untilSleeping({ pid: internals(client).processID });
  return { ended, settled: () => done };
}

/** Waits (bounded) for the sleeping query to end, and checks that a cancel ended it. */
async function expectCanceled(sleeping: { ended: Promise<unknown> }): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise((resolve) => (timer = setTimeout(() => resolve(new Error("the query was not cancelled within 10 s")), 10_000)));
  const err = await Promise.race([sleeping.ended, timeout]);
  clearTimeout(timer);
  expect(err).toMatchObject({ code: "57014", message: "canceling statement due to user request" });
}

describe("cancel", () => {
  it("psql's Ctrl-C (SIGINT) cancels its query through the proxy", async () => {
    const sql = "SELECT pg_sleep(60) /* ctrl-c */";
    const child = startClient("psql", ["-X", "-w", "-d", libpq("prefer"), "-c", sql]);
    const exited = finished(child, 30_000);
    let pid: number;
    try {
      pid = await untilSleeping({ query: sql });
    } catch (err) {
      child.kill("SIGKILL");
      throw err;
    }
    const signalled = performance.now();
    child.kill("SIGINT");
    const run = await exited;
    expect(performance.now() - signalled).toBeLessThan(5_000);
    expect(run.code).toBe(1);
    expect(run.stderr).toContain("canceling statement due to user request");
    await logger.waitFor("cancel request forwarded", { backendPid: pid });
  });

  it("pg_cancel_backend(pid) from another connection, with the pid the client was given", async () => {
    const victim = await connectPg();
    const { processID } = internals(victim);
    expect((await victim.query("SELECT pg_backend_pid() AS pid")).rows[0].pid).toBe(processID);
    const sleeping = await sleepOn(victim);
    const other = await connectPg();
    expect((await other.query("SELECT pg_cancel_backend($1) AS ok", [processID])).rows[0].ok).toBe(true);
    await expectCanceled(sleeping);
    await Promise.all([victim.end(), other.end()]);
  });

  it("a CancelRequest sent inside TLS cancels the query", async () => {
    const victim = await connectPg({ ssl: { ca: world.localCa.certPem, servername: "localhost" } });
    const { processID, secretKey } = internals(victim);
    const sleeping = await sleepOn(victim);

    const plain = await RawConnection.open(proxy.port);
    plain.send(sslRequest());
    expect(await plain.byte()).toBe("S".charCodeAt(0));
    const conn = await plain.startTls({ ca: world.localCa.certPem, servername: "localhost" });
    const key = Buffer.alloc(4);
    key.writeInt32BE(secretKey);
    conn.send(cancelRequest(processID, key));
    expect((await conn.rest()).length).toBe(0); // nothing comes back, as from PostgreSQL
    await expectCanceled(sleeping);
    await logger.waitFor("cancel request forwarded", { backendPid: processID });
    await victim.end();
  });

  it("a CancelRequest with a wrong key cancels nothing", async () => {
    const victim = await connectPg();
    const { processID, secretKey } = internals(victim);
    const sleeping = await sleepOn(victim);
    const dropped = logger.named("cancel request for an unknown session dropped").length;

    const wrong = Buffer.alloc(4);
    wrong.writeInt32BE(secretKey ^ 0x5a5a5a5a);
    const conn = await RawConnection.open(proxy.port);
    conn.send(cancelRequest(processID, wrong));
    expect((await conn.rest()).length).toBe(0);
    // The proxy decides synchronously on arrival; once it says so, nothing was forwarded.
    await logger.waitFor("cancel request for an unknown session dropped");
    expect(logger.named("cancel request for an unknown session dropped").length).toBe(dropped + 1);
    expect(logger.named("cancel request forwarded").some((e) => e.fields.backendPid === processID)).toBe(false);
    expect(await untilSleeping({ pid: processID }, 0)).toBe(processID);
    expect(sleeping.settled()).toBe(false);

    // The right key still works.
    const right = Buffer.alloc(4);
    right.writeInt32BE(secretKey);
    const good = await RawConnection.open(proxy.port);
    good.send(cancelRequest(processID, right));
    await good.rest();
    await expectCanceled(sleeping);
    await victim.end();
  });
});

describe("data through the relay", () => {
  it("COPY of 100 MB in and out, byte for byte", { timeout: 120_000 }, async () => {
    const input = join(world.dir.path, "copy-in.tsv");
    const output = join(world.dir.path, "copy-out.tsv");
    const { sha256: sentHash, rows, bytes } = await writeCopyData(input, 100 * 1024 * 1024);
    // One seq scan from block 0: no synchronized scans, so rows come out in the order they went in.
    const connection = libpq("require", { options: "-c synchronize_seqscans=off" });
    expect((await psql(connection, ["CREATE TABLE copy_t (id bigint, payload text)"])).stderr).toBe("");
    // The relay must stream with backpressure: the proxy (in this process) never holds much of the 100 MB.
    const memory = watchBufferMemory();
    const before = proxy.proxy.stats();
    try {
      const inFile = await open(input, "r");
      const copyIn = await runClient("psql", ["-X", "-w", "-v", "ON_ERROR_STOP=1", "-d", connection, "-c", "COPY copy_t FROM STDIN"], { input: inFile.fd, timeoutMs: 100_000 });
      await inFile.close();
      expect(copyIn.stderr).toBe("");
      expect(copyIn.stdout.toString().trim()).toBe(`COPY ${rows}`);

      const outFile = await open(output, "w");
      const copyOut = await runClient("psql", ["-X", "-w", "-v", "ON_ERROR_STOP=1", "-d", connection, "-c", "COPY copy_t TO STDOUT"], { stdoutFd: outFile.fd, timeoutMs: 100_000 });
      await outFile.close();
      expect(copyOut.stderr).toBe("");
      expect(copyOut.code).toBe(0);
      // The proxy counted the traffic both ways (TLS records included).
      const after = proxy.proxy.stats();
      expect(after.bytesFromClients - before.bytesFromClients).toBeGreaterThan(bytes);
      expect(after.bytesToClients - before.bytesToClients).toBeGreaterThan(bytes);
      // Uncollected garbage counts too (about 32 MB seen): the bound only tells streaming from holding it all.
      expect(memory.stop()).toBeLessThan(64 * 1024 * 1024);
      const received = await hashFile(output);
      expect(received.bytes).toBe(bytes);
      expect(received.sha256).toBe(sentHash);
    } finally {
      memory.stop();
      await Promise.all([rm(input, { force: true }), rm(output, { force: true }), psql(connection, ["DROP TABLE copy_t"])]);
    }
  });

  it("LISTEN/NOTIFY between two proxied connections", async () => {
    const listener = await connectPg();
    const notifier = await connectPg();
    await listener.query("LISTEN rdsd_test_channel");
    const received = new Promise<pg.Notification>((resolve) => listener.once("notification", resolve));
    await notifier.query("SELECT pg_notify('rdsd_test_channel', 'hello through the proxy')");
    const note = await received;
    expect(note).toMatchObject({ channel: "rdsd_test_channel", payload: "hello through the proxy", processId: internals(notifier).processID });
    await Promise.all([listener.end(), notifier.end()]);
  });
});

describe("load", () => {
  it("200 concurrent node-postgres connections, one IAM signing at most", { timeout: 60_000 }, async () => {
    const signings = () => world.tokens.describe().find((s) => s.user === "iam_user")?.signings ?? 0;
    const before = signings();
    const clients = Array.from({ length: 200 }, () => pgClient({ host: "127.0.0.1", port: proxy.port, user: "someone", database: "orders", ssl: false }));
    await Promise.all(clients.map((c) => c.connect()));
    expect(proxy.proxy.stats().connections).toBe(200);
    const results = await Promise.all(clients.map((c, i) => c.query("SELECT $1::int AS n, current_user AS u", [i])));
    results.forEach((r, i) => expect(r.rows[0]).toEqual({ n: i, u: "iam_user" }));
    const pids = new Set(clients.map((c) => internals(c).processID));
    expect(pids.size).toBe(200);
    await Promise.all(clients.map((c) => c.end()));
    await untilIdle(proxy.proxy);
    expect(proxy.proxy.stats().connections).toBe(0);
    expect(signings() - before).toBeLessThanOrEqual(1);
  });

  it("pgbench: initialize at scale 1, then 200 select-only transactions on each of 4 clients", { timeout: 60_000 }, async () => {
    const connection = libpq("prefer");
    const init = await runClient("pgbench", ["-i", "-s", "1", "-q", connection], { timeoutMs: 50_000 });
    expect(init.code).toBe(0);
    expect(init.stderr).toContain("done in");
    const run = await runClient("pgbench", ["-S", "-t", "200", "-c", "4", "-j", "2", connection], { timeoutMs: 50_000 });
    const out = run.stdout.toString();
    expect(run.code).toBe(0);
    expect(out).toContain("number of transactions actually processed: 800/800");
    if (world.pg.version >= 15) expect(out).toMatch(/number of failed transactions: 0 \(0\.000%\)/);
  });
});

describe("the server ending a session", () => {
  it("pg_terminate_backend: the client gets the server's FATAL, then the close", async () => {
    const client = await connectPg();
    const { processID } = internals(client);
    const errors: unknown[] = [];
    client.on("error", (err) => errors.push(err));
    const ended = new Promise<void>((resolve) => client.once("end", () => resolve()));
    expect((await world.pg.admin("SELECT pg_terminate_backend($1) AS ok", [processID])).rows[0].ok).toBe(true);
    await ended;
    // The server's own words first; node-postgres then adds its "Connection terminated unexpectedly".
    expect(errors[0]).toMatchObject({ code: "57P01", message: "terminating connection due to administrator command" });
    await untilIdle(proxy.proxy);
  });
});

describe("stopping the proxy", () => {
  it("stop() ends live sessions and their server backends", async () => {
    const extra = await world.startProxy({ user: "iam_user", auth: world.iam("iam_user"), defaultDatabase: "orders" });
    const client = pgClient({ host: "127.0.0.1", port: extra.port, user: "someone", database: "orders", ssl: false });
    await client.connect();
    const { processID } = internals(client);
    const ended = new Promise<void>((resolve) => client.once("end", () => resolve()));
    client.on("error", () => {});
    let timer: NodeJS.Timeout | undefined;
    const stuck = new Promise<string>((resolve) => (timer = setTimeout(() => resolve("stop() did not return within 5 s"), 5_000)));
    expect(await Promise.race([extra.stop().then(() => "stopped"), stuck])).toBe("stopped");
    clearTimeout(timer);
    await ended;
    expect(extra.proxy.stats().connections).toBe(0);
    // The backend goes too (RDS connection slots are precious): polled, no event exists.
    const deadline = performance.now() + 10_000;
    while ((await world.pg.admin("SELECT 1 FROM pg_stat_activity WHERE pid = $1", [processID])).rows.length > 0) {
      if (performance.now() > deadline) throw new Error(`backend ${processID} still exists after the proxy stopped`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  });
});

/** Samples this process's Buffer memory until stopped; returns the peak growth over the start, in bytes. */
function watchBufferMemory(): { stop(): number } {
  const used = () => process.memoryUsage().arrayBuffers;
  const start = used();
  let peak = start;
  const timer = setInterval(() => (peak = Math.max(peak, used())), 10);
  return {
    stop() {
      clearInterval(timer);
      return Math.max(peak, used()) - start;
    },
  };
}

/** Writes COPY text rows (id, 90 hex chars) up to about `size` bytes, streaming; returns their hash. */
async function writeCopyData(path: string, size: number): Promise<{ sha256: string; rows: number; bytes: number }> {
  const hash = createHash("sha256");
  const out = createWriteStream(path);
  let rows = 0;
  let bytes = 0;
  while (bytes < size) {
    const lines: string[] = [];
    const random = randomBytes(45 * 10_000).toString("hex");
    for (let i = 0; i < 10_000; i++) lines.push(`${++rows}\t${random.slice(i * 90, i * 90 + 90)}\n`);
    const chunk = Buffer.from(lines.join(""));
    hash.update(chunk);
    bytes += chunk.length;
    if (!out.write(chunk)) await new Promise<void>((resolve) => out.once("drain", () => resolve()));
  }
  out.end();
  await streamFinished(out);
  return { sha256: hash.digest("hex"), rows, bytes };
}

async function hashFile(path: string): Promise<{ sha256: string; bytes: number }> {
  const hash = createHash("sha256");
  let bytes = 0;
  for await (const chunk of createReadStream(path)) {
    hash.update(chunk as Buffer);
    bytes += (chunk as Buffer).length;
  }
  return { sha256: hash.digest("hex"), bytes };
}
