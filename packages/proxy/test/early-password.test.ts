import pg from "pg";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { createCertificateAuthority } from "@rdsd/certs";
import { DirectDialer, passwordAuth, type UpstreamAuth } from "@rdsd/proxy";
import { recordingTlsServer } from "@rdsd/testkit";
import { RDS_HOST, RecordingLogger, startProxyWorld, type ProxyWorld, type RunningProxy } from "./fixture.js";
import { loginTrace, recordingTlsRelay, type RecordingRelay, type RelayedConnection } from "./tls-relay.js";

// IAM tokens with a frozen clock, as in login.test.ts: the right token is known in advance.
const FROZEN_TIME = new Date(Math.floor(Date.now() / 1000) * 1000);

/**
 * Whether a role gets `password` (cleartext) or another method is decided per login by its membership of
 * cleartext_login, as RDS decides IAM by membership of rds_iam: GRANT/REVOKE changes the server's method
 * between two logins without reloading pg_hba.
 */
const HBA = [
  "hostssl all +cleartext_login 127.0.0.1/32 password",
  "hostssl all to_scram 127.0.0.1/32 scram-sha-256",
  "hostssl all to_md5 127.0.0.1/32 md5",
  "hostssl all to_trust 127.0.0.1/32 trust",
];

/** The login of a server that asks for a cleartext password, the password sent when asked: two round trips. */
const ASKED_THEN_SENT = [">startup", "<R3", ">p", "<R0", "<K", "<Z"];
/** The same with the password in the startup's write: one round trip. */
const SENT_EARLY = [">startup", ">p", "<R3", "<R0", "<K", "<Z"];

let world: ProxyWorld;
let relay: RecordingRelay;
const running: RunningProxy[] = [];

beforeAll(async () => {
  world = await startProxyWorld({ hba: HBA });
  vi.useFakeTimers({ toFake: ["Date"], now: FROZEN_TIME });
  await world.pg.admin(`ALTER ROLE iam_user PASSWORD '${await world.expectedToken("iam_user")}'`);
  await world.pg.admin("CREATE ROLE cleartext_login NOLOGIN");
  // The fixture's admin session has password_encryption = md5 set: SCRAM needs a SCRAM-stored password.
  await world.pg.admin("SET password_encryption = 'scram-sha-256'; CREATE ROLE to_scram LOGIN PASSWORD 'scram-later-secret'");
  // MD5 only answers for an MD5-stored password (a SCRAM-stored one makes pg_hba's md5 ask for SCRAM).
  await world.pg.admin("SET password_encryption = 'md5'; CREATE ROLE to_md5 LOGIN PASSWORD 'md5-later-secret'");
  await world.pg.admin("CREATE ROLE to_trust LOGIN PASSWORD 'trust-later-secret'");
  relay = await recordingTlsRelay({ certPem: world.rds.certPem, keyPem: world.rds.keyPem, serverPort: world.pg.port, servername: RDS_HOST, ca: world.rds.caPem });
});

afterAll(async () => {
  vi.useRealTimers();
  await relay?.close();
  await world?.close();
});

afterEach(async () => {
  for (const r of running.splice(0)) await r.stop();
});

/** A proxy whose upstream connections go through the recording relay; no reuse, so every client logs in. */
async function start(user: string, auth: UpstreamAuth, options: { spares?: number; serverPort?: number } = {}) {
  const logger = new RecordingLogger();
  const proxy = await world.startProxy({
    user,
    auth,
    defaultDatabase: "postgres",
    logger,
    dialer: new DirectDialer("127.0.0.1", options.serverPort ?? relay.port),
    ...(options.spares ? { pool: { idle: 0, idleTimeoutMs: 60_000, spares: options.spares } } : {}),
  });
  running.push(proxy);
  return { ...proxy, logger };
}

function password(value: string): UpstreamAuth {
  return passwordAuth({ env: "PW" }, { PW: value });
}

/** Connects a node-postgres client, checks who it is logged in as, ends; the relay connections its login used. */
async function session(port: number, expectedUser: string): Promise<RelayedConnection[]> {
  const before = relay.connections.length;
  const client = new pg.Client({ host: "127.0.0.1", port, user: "someone", ssl: false });
  await client.connect();
  expect((await client.query("SELECT current_user AS u")).rows[0].u).toBe(expectedUser);
  await client.end();
  return loginsSince(before);
}

/** The relay connections from number `before` on that carried a login (not spares that were never used). */
function loginsSince(before: number): RelayedConnection[] {
  return relay.connections.slice(before).filter((c) => c.messages.length > 0);
}

/** The proxy's startup and password arrived in one decrypted read: one TLS record, one write. */
function inOneRecord(connection: RelayedConnection): boolean {
  const [startup, early] = connection.messages;
  return startup?.label === "startup" && early?.from === "proxy" && early.label === "p" && early.read === startup.read;
}

describe("password auth: the cleartext password goes with the startup once the server has asked for one", () => {
  it("the first login waits to be asked; the next ones send it in the startup's write (one round trip)", async () => {
    const { port, logger } = await start("clear_user", password("clear-secret"));
    const [first] = await session(port, "clear_user");
    expect(loginTrace(first!)).toEqual(ASKED_THEN_SENT);

    for (let i = 0; i < 2; i++) {
      const mark = logger.mark();
      const connections = await session(port, "clear_user");
      expect(connections).toHaveLength(1);
      expect(loginTrace(connections[0]!)).toEqual(SENT_EARLY);
      expect(inOneRecord(connections[0]!)).toBe(true);
      expect((await logger.waitFor("client connected", {}, 10_000, mark)).fields.earlyPassword).toBe(true);
    }
  });

  it("is remembered per database: another database's first login waits to be asked again", async () => {
    const { port } = await start("clear_user", password("clear-secret"));
    await session(port, "clear_user");
    expect(loginTrace((await session(port, "clear_user"))[0]!)).toEqual(SENT_EARLY);
    const client = new pg.Client({ host: "127.0.0.1", port, user: "someone", database: "orders", ssl: false });
    const before = relay.connections.length;
    await client.connect();
    await client.end();
    expect(loginsSince(before).map(loginTrace)).toEqual([ASKED_THEN_SENT]);
  });

  it.each([
    ["scram_user", "scram-secret", [">startup", "<R10", ">p", "<R11", ">p", "<R12", "<R0", "<K", "<Z"]],
    ["md5_user", "md5-secret", [">startup", "<R5", ">p", "<R0", "<K", "<Z"]],
  ])("%s: never sends an early password to a server that asks for SCRAM or MD5; each login succeeds", async (user, secret, trace) => {
    const { port } = await start(user, password(secret));
    for (let i = 0; i < 3; i++) {
      const connections = await session(port, user);
      expect(connections).toHaveLength(1);
      expect(loginTrace(connections[0]!)).toEqual(trace);
      expect(connections[0]!.fromProxy().includes(secret)).toBe(false);
    }
  });
});

describe("a server that no longer wants a cleartext password: the client still gets its session", () => {
  // What PostgreSQL does with the early password: SCRAM reads it as a SASLInitialResponse naming an unknown
  // mechanism (08P01), MD5 compares it with the hash it expects (28P01), trust has logged in already and
  // takes it for an invalid message (08P01). Each time the proxy retries at once, waiting to be asked.
  it.each([
    { user: "to_scram", method: "scram-sha-256", secret: "scram-later-secret", asked: "R10", serverError: "E08P01" },
    { user: "to_md5", method: "md5", secret: "md5-later-secret", asked: "R5", serverError: "E28P01" },
    { user: "to_trust", method: "trust", secret: "trust-later-secret", asked: "R0", serverError: "E08P01" },
  ])("pg_hba changes from password to $method: one retry, waiting to be asked", async ({ user, secret, asked, serverError }) => {
    await world.pg.admin(`GRANT cleartext_login TO ${user}`);
    const { port, logger } = await start(user, password(secret));
    expect(loginTrace((await session(port, user))[0]!)).toEqual(ASKED_THEN_SENT);
    expect(loginTrace((await session(port, user))[0]!)).toEqual(SENT_EARLY);

    await world.pg.admin(`REVOKE cleartext_login FROM ${user}`);
    const mark = logger.mark();
    const [spoiled, retried, ...more] = await session(port, user);
    expect(more).toHaveLength(0);
    await spoiled!.closed;
    expect(loginTrace(spoiled!).slice(0, 3)).toEqual([">startup", ">p", `<${asked}`]);
    // The server really did choke on it (its FATAL, after its greeting for trust).
    expect(spoiled!.messages.filter((m) => m.from === "server").at(-1)?.label).toBe(serverError);
    expect(loginTrace(retried!).slice(0, 2)).toEqual([">startup", `<${asked}`]);
    expect(retried!.fromProxy().includes(secret)).toBe(false);
    expect((await logger.waitFor("login retried without an early password", {}, 10_000, mark)).fields.reason).toMatch(/not for the cleartext password/);

    // Not sent early again, to this server or after it.
    const [next] = await session(port, user);
    expect(loginTrace(next!).slice(0, 2)).toEqual([">startup", `<${asked}`]);
    expect(next!.fromProxy().includes(secret)).toBe(false);
  });

  it("a server that asks for a cleartext password again is learnt again", async () => {
    await world.pg.admin("GRANT cleartext_login TO to_scram");
    const { port } = await start("to_scram", password("scram-later-secret"));
    await session(port, "to_scram");
    expect(loginTrace((await session(port, "to_scram"))[0]!)).toEqual(SENT_EARLY);
    await world.pg.admin("REVOKE cleartext_login FROM to_scram");
    expect(await session(port, "to_scram")).toHaveLength(2); // the fallback
    await world.pg.admin("GRANT cleartext_login TO to_scram");
    try {
      expect(loginTrace((await session(port, "to_scram"))[0]!)).toEqual(ASKED_THEN_SENT);
      expect(loginTrace((await session(port, "to_scram"))[0]!)).toEqual(SENT_EARLY);
    } finally {
      await world.pg.admin("REVOKE cleartext_login FROM to_scram");
    }
  });
});

describe("IAM: the token goes with the startup from the first login on", () => {
  it("one write carries the startup and the token, on a new connection and on a warm spare", async () => {
    const token = await world.expectedToken("iam_user");
    for (const spares of [0, 1]) {
      const { port, logger, stop } = await start("iam_user", world.iam("iam_user"), { spares });
      let spare: RelayedConnection | undefined;
      if (spares) {
        // Spares follow use: a first client starts one. It is the connection the proxy has sent nothing on.
        const before = relay.connections.length;
        await session(port, "iam_user");
        await logger.waitFor("spare connection ready");
        spare = relay.connections.slice(before).find((c) => c.fromProxy().length === 0);
        expect(spare).toBeDefined();
      }
      const mark = logger.mark();
      const opened = await session(port, "iam_user");
      const connection = spare ?? opened[0];
      expect(loginTrace(connection!)).toEqual(SENT_EARLY);
      expect(inOneRecord(connection!)).toBe(true);
      // The relay holds the certificate for the RDS host: the proxy verified it before writing anything.
      expect(connection!.fromProxy().includes(token)).toBe(true);
      expect((await logger.waitFor("client connected", {}, 10_000, mark)).fields).toMatchObject({ earlyPassword: true, spare: spares === 1 });
      await stop();
      running.pop();
    }
  });

  it("the early token is written only on a connection whose certificate was verified: an impostor gets nothing, and no spare is opened on it", async () => {
    const otherCa = await createCertificateAuthority({ commonName: "Impostor CA" });
    const impostor = await recordingTlsServer(await otherCa.issueServerCertificate({ dnsNames: [RDS_HOST] }));
    try {
      for (const spares of [0, 1]) {
        const { port, stop } = await start("iam_user", world.iam("iam_user"), { spares, serverPort: impostor.port });
        const client = new pg.Client({ host: "127.0.0.1", port, user: "someone", ssl: false });
        client.on("error", () => {});
        const err = (await client.connect().then(
          () => new Error("expected a refusal"),
          (e: unknown) => e,
        )) as Error;
        expect(err.message).toContain(`TLS: certificate of ${RDS_HOST} is not signed by a trusted CA`);
        await stop();
        running.pop();
      }
      // One connection per client: spares are opened only after a client's own login succeeded, so none here.
      expect(impostor.connectionCount()).toBe(2);
      expect(impostor.handshakeCompleted()).toBe(false);
      expect(impostor.received().length).toBe(0);
    } finally {
      await impostor.close();
    }
  });

  it("a user without rds_iam (SCRAM) gets the rds_iam fix, and later logins do not send the token early", async () => {
    const token = (await world.tokens.getToken({ host: RDS_HOST, port: 5432, user: "scram_user", region: "eu-west-2" })).token;
    const { port } = await start("scram_user", world.iam("scram_user"));
    for (let i = 0; i < 2; i++) {
      const before = relay.connections.length;
      const client = new pg.Client({ host: "127.0.0.1", port, user: "someone", ssl: false });
      client.on("error", () => {});
      const err = (await client.connect().then(
        () => new Error("expected a refusal"),
        (e: unknown) => e,
      )) as pg.DatabaseError;
      expect(err.message).toContain('database user "scram_user" does not use IAM authentication');
      expect(err.hint).toContain('GRANT rds_iam TO "scram_user"');
      const connections = loginsSince(before);
      await Promise.all(connections.map((c) => c.closed));
      if (i === 0) {
        // The first login sent the token early to the verified server, which asked for SCRAM; the retry did not.
        expect(connections.map(loginTrace).map((t) => t.slice(0, 3))).toEqual([[">startup", ">p", "<R10"], [">startup", "<R10"]]);
      } else {
        expect(connections.map(loginTrace)).toEqual([[">startup", "<R10"]]);
      }
      expect(connections.slice(-1)[0]!.fromProxy().includes(token)).toBe(false);
    }
  });
});
