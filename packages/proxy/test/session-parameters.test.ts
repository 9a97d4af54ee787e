import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { passwordAuth } from "@rdsd/proxy";
import { RecordingLogger, startProxyWorld, type ProxyWorld, type RunningProxy } from "./fixture.js";
import { conninfo, psql } from "./libpq.js";

// A target's `parameters` travel in the startup `options` after the client's own; `readOnly` is
// default_transaction_read_only = on plus a hint on the server's 25006 errors. Real PostgreSQL, real psql
// and node-postgres.

const HINT = "target orders-dev is read-only in rdsd's config (readOnly: true)";
/** Spaces and backslashes in both the client's and the target's values: both must arrive intact. */
const TARGET_TEXT = "target says a b\\c  d\\\\e";
const CLIENT_TEXT = "client says x y\\z";

let world: ProxyWorld;
let readOnly: RunningProxy;
let plain: RunningProxy;

beforeAll(async () => {
  world = await startProxyWorld();
  const auth = passwordAuth({ env: "PW" }, { PW: "scram-secret" });
  // What the daemon passes for `readOnly: true, parameters: { rdsd.target_text: ..., rdsd.who: target }`.
  const parameters = { "rdsd.target_text": TARGET_TEXT, "rdsd.who": "target", application_name: "rdsd-default", default_transaction_read_only: "on" };
  readOnly = await world.startProxy({ user: "scram_user", auth, defaultDatabase: "postgres", clientTls: null, parameters, readOnly: true });
  plain = await world.startProxy({ user: "scram_user", auth, defaultDatabase: "postgres", clientTls: null });
});

afterAll(async () => {
  await world?.close();
});

function libpq(proxy: RunningProxy, extra: Record<string, string> = {}): string {
  return conninfo({ host: "127.0.0.1", port: proxy.port, user: "someone", sslmode: "disable", connect_timeout: 10, ...extra });
}

async function connectPg(proxy: RunningProxy, config: pg.ClientConfig = {}): Promise<pg.Client> {
  const client = new pg.Client({ host: "127.0.0.1", port: proxy.port, user: "someone", ssl: false, ...config });
  await client.connect();
  return client;
}

describe("readOnly: true", () => {
  it("psql: create table fails with SQLSTATE 25006 and rdsd's hint; default_transaction_read_only is on", async () => {
    const show = await psql(libpq(readOnly), ["SHOW default_transaction_read_only"]);
    expect(show.stderr).toBe("");
    expect(show.stdout.toString().trim()).toBe("on");

    const write = await psql(libpq(readOnly), ["\\set VERBOSITY verbose", "CREATE TABLE t (x int)"]);
    expect(write.code).not.toBe(0);
    const stderr = write.stderr.toString();
    expect(stderr).toContain("ERROR:  25006: cannot execute CREATE TABLE in a read-only transaction");
    expect(stderr).toContain(`HINT:  ${HINT}`);
  });

  it("node-postgres: the error carries code 25006 and the hint, the session goes on, and SET can lift the guard (it is no boundary)", async () => {
    const client = await connectPg(readOnly);
    try {
      await client.query("BEGIN");
      const error = await client.query("CREATE TEMP TABLE t (x int)").then(
        () => undefined,
        (err: unknown) => err as pg.DatabaseError,
      );
      expect(error).toMatchObject({ code: "25006", hint: HINT, severity: "ERROR" });
      await client.query("ROLLBACK");
      // Other errors pass as the server sent them.
      const other = await client.query("SELECT * FROM no_such_table").catch((err: unknown) => err as pg.DatabaseError);
      expect(other).toMatchObject({ code: "42P01" });
      expect((other as pg.DatabaseError).hint).toBeUndefined();
      // A guard against accidents: the client can turn it off for its session (grants are the boundary).
      await client.query("SET default_transaction_read_only = off");
      await client.query("CREATE TEMP TABLE t (x int)");
      expect((await client.query("SELECT count(*)::int AS n FROM t")).rows[0]).toEqual({ n: 0 });
    } finally {
      await client.end();
    }
  });

  it("a reused (parked) server connection keeps the settings and the hint", async () => {
    const logger = new RecordingLogger();
    const pooled = await world.startProxy({ logger, user: "scram_user", auth: passwordAuth({ env: "PW" }, { PW: "scram-secret" }), defaultDatabase: "postgres", clientTls: null, parameters: { default_transaction_read_only: "on" }, readOnly: true, pool: { idle: 1, idleTimeoutMs: 60_000 } });
    try {
      const pids: number[] = [];
      for (let round = 0; round < 2; round++) {
        const client = await connectPg(pooled);
        const pid = (await client.query<{ pid: number }>("SELECT pg_backend_pid() AS pid")).rows[0]!.pid;
        pids.push(pid);
        await client.query("SET default_transaction_read_only = off");
        // The reset before parking (DISCARD ALL) goes back to the session's startup values.
        const parked = logger.waitFor("server connection parked", { backendPid: pid }, 10_000, logger.mark());
        await client.end();
        await parked;
      }
      const client = await connectPg(pooled);
      try {
        expect((await client.query("SHOW default_transaction_read_only")).rows[0]).toEqual({ default_transaction_read_only: "on" });
        const error = await client.query("CREATE TEMP TABLE t (x int)").catch((err: unknown) => err as pg.DatabaseError);
        expect(error).toMatchObject({ code: "25006", hint: HINT });
        expect(pids[1]).toBe(pids[0]);
      } finally {
        await client.end();
      }
    } finally {
      await pooled.stop();
    }
  });

  it("a target without readOnly writes, and its 25006 errors get no hint", async () => {
    const client = await connectPg(plain);
    try {
      expect((await client.query("SHOW default_transaction_read_only")).rows[0]).toEqual({ default_transaction_read_only: "off" });
      await client.query("CREATE TEMP TABLE t (x int)");
      await client.query("BEGIN READ ONLY");
      const error = await client.query("CREATE TEMP TABLE t2 (x int)").catch((err: unknown) => err as pg.DatabaseError);
      expect(error).toMatchObject({ code: "25006" });
      expect((error as pg.DatabaseError).hint).toBeUndefined();
    } finally {
      await client.end();
    }
  });
});

describe("parameters", () => {
  const QUERY = "SELECT current_setting('rdsd.client_text') || '|' || current_setting('rdsd.target_text') || '|' || current_setting('rdsd.who') || '|' || current_setting('application_name')";

  it("psql: the client's options and the target's parameters both arrive with spaces and backslashes intact, the target's after the client's", async () => {
    // libpq sends `options` as given: the client escapes its own spaces and backslashes.
    const options = `-c rdsd.client_text=${CLIENT_TEXT.replaceAll("\\", "\\\\").replaceAll(" ", "\\ ")} -c rdsd.who=client`;
    const run = await psql(libpq(readOnly, { options, application_name: "psql-app" }), [QUERY]);
    expect(run.stderr.toString()).toBe("");
    // rdsd.who: both set it, the target's came later and won. application_name: a startup parameter of the
    // client's own (not in options) is applied after options, so the target's value is only a default.
    expect(run.stdout.toString().trim()).toBe(`${CLIENT_TEXT}|${TARGET_TEXT}|target|psql-app`);
  });

  it("node-postgres: the same through its options setting, and the target's application_name as the default", async () => {
    const client = await connectPg(readOnly, { options: `-c rdsd.client_text=${CLIENT_TEXT.replaceAll("\\", "\\\\").replaceAll(" ", "\\ ")}` });
    try {
      expect((await client.query<{ v: string }>(`${QUERY.replace("SELECT", "SELECT")} AS v`)).rows[0]!.v).toBe(`${CLIENT_TEXT}|${TARGET_TEXT}|target|rdsd-default`);
    } finally {
      await client.end();
    }
  });

  it("a client with no options gets the target's alone", async () => {
    const run = await psql(libpq(readOnly), ["SELECT current_setting('rdsd.target_text') || '|' || current_setting('rdsd.client_text', true) IS NULL"]);
    expect(run.stderr.toString()).toBe("");
    expect(run.stdout.toString().trim()).toBe("t");
    const value = await psql(libpq(readOnly), ["SELECT current_setting('rdsd.target_text')"]);
    expect(value.stdout.toString().trim()).toBe(TARGET_TEXT);
  });
});
