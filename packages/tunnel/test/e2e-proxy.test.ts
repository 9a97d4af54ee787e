import { execFileSync } from "node:child_process";
import { Signer } from "@aws-sdk/rds-signer";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { describeCredentialError, IamTokenCache, staticCredentialProvider } from "@rdsd/iam";
import { iamAuth, TargetProxy, type TargetProxyOptions } from "@rdsd/proxy";
import { startEmulator } from "@rdsd/ssm-emulator";
import type { Emulator } from "@rdsd/ssm-emulator";
import { makeRdsLikeTls, startPostgres } from "@rdsd/testkit";
import type { PostgresServer, RdsLikeTls } from "@rdsd/testkit";
import { ManualClock, systemClock } from "../src/clock.js";
import type { Tunnel, TunnelDeps } from "../src/tunnel.js";
import { RDS_HOST } from "./helpers.js";
import { FAST, target, tunnelFor, waitForState } from "./tunnel-helpers.js";

// proxy -> tunnel dialer -> SSM emulator (RDS name mapped to the local PostgreSQL) -> real PostgreSQL,
// TLS verify-full against the RDS name, IAM login with the token signed for that name and port 5432.
const REGION = "eu-west-2";
const KEYS = { accessKeyId: "AKIDTESTTUNNEL000001", secretAccessKey: "tunnel-test-secret-not-a-real-key-00000" };
// Frozen Date: the IAM token (a SigV4 presigned URL) is known in advance and set as the role's password.
const FROZEN = new Date(Math.floor(Date.now() / 1000) * 1000);

let pgServer: PostgresServer;
let rds: RdsLikeTls;
let tokens: IamTokenCache;

beforeAll(async () => {
  rds = await makeRdsLikeTls(RDS_HOST);
  pgServer = await startPostgres({
    tls: { certPem: rds.certPem, keyPem: rds.keyPem },
    hba: ["hostssl all iam_user 127.0.0.1/32 password", "hostnossl all all 127.0.0.1/32 reject"],
  });
  await pgServer.admin("CREATE ROLE iam_user LOGIN");
  await pgServer.admin("CREATE DATABASE orders OWNER iam_user");
  vi.useFakeTimers({ toFake: ["Date"], now: FROZEN });
  const token = await new Signer({ hostname: RDS_HOST, port: 5432, username: "iam_user", region: REGION, credentials: KEYS }).getAuthToken();
  await pgServer.admin(`ALTER ROLE iam_user PASSWORD '${token}'`);
  tokens = new IamTokenCache({ credentials: staticCredentialProvider(KEYS) });
}, 120_000);

afterAll(async () => {
  vi.useRealTimers();
  await pgServer?.stop();
});

interface World {
  emulator: Emulator;
  tunnel: Tunnel;
  proxy: TargetProxy;
  port: number;
  close(): Promise<void>;
}

async function world(
  driver: "native" | "plugin",
  emulatorOptions: Parameters<typeof startEmulator>[0] = {},
  proxyOptions: Pick<TargetProxyOptions, "pool"> = {},
  tunnelDeps: Partial<TunnelDeps> = {},
): Promise<World> {
  const emulator = await startEmulator({ pacing: false, hostMap: [`${RDS_HOST}=127.0.0.1:${pgServer.port}`], ...emulatorOptions });
  const tunnel = tunnelFor(emulator, target({ tunnel: { driver } }), tunnelDeps);
  tunnel.start();
  // An old agent works, degraded by its warning.
  await waitForState(tunnel, (s) => s.state === "ready" || (s.state === "degraded" && s.warnings.length > 0), 20_000);
  const proxy = new TargetProxy({
    name: "orders-dev",
    listen: [{ host: "127.0.0.1", port: 0 }],
    upstream: {
      host: RDS_HOST,
      port: 5432,
      user: "iam_user",
      ca: rds.caPem,
      auth: iamAuth(tokens, { host: RDS_HOST, port: 5432, user: "iam_user", region: REGION }, (err) => describeCredentialError(err)),
    },
    dialer: tunnel.dialer,
    clientTls: null,
    ...proxyOptions,
  });
  await proxy.start();
  return {
    emulator,
    tunnel,
    proxy,
    port: proxy.addresses()[0]!.port,
    async close() {
      await proxy.stop(0);
      await tunnel.stop();
      expect(emulator.sessions({ active: true })).toEqual([]);
      await emulator.close();
    },
  };
}

async function query(port: number, sql: string): Promise<unknown[]> {
  const client = new pg.Client({ host: "127.0.0.1", port, user: "someone", database: "orders", ssl: false });
  await client.connect();
  try {
    return (await client.query(sql)).rows;
  } finally {
    await client.end();
  }
}

function pluginOnPath(): boolean {
  try {
    execFileSync("session-manager-plugin", ["--version"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

describe("Postgres end to end through the native driver", () => {
  it("logs in with IAM over verify-full TLS and runs queries, several sessions in parallel", async () => {
    const w = await world("native");
    try {
      const rows = await query(w.port, "SELECT current_user AS u, current_database() AS d, ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()");
      expect(rows).toEqual([{ u: "iam_user", d: "orders", ssl: true }]);
      const many = await Promise.all(Array.from({ length: 10 }, (_, i) => query(w.port, `SELECT ${i} AS n, count(*)::int AS c FROM generate_series(1, 10000)`)));
      expect(many.map((r) => r[0])).toEqual(Array.from({ length: 10 }, (_, i) => ({ n: i, c: 10000 })));
      const session = w.emulator.session(w.tunnel.status().sessionIds[0]!)!;
      expect(session.mode).toBe("multiplexed");
      expect(session.bytesToClient).toBeGreaterThan(0);
    } finally {
      await w.close();
    }
  }, 60_000);

  it("a new session's probe through the database leaves nothing in PostgreSQL's log (TLS closed with close_notify)", async () => {
    const complaints = /could not accept SSL connection|incomplete startup packet|could not receive data from client|unexpected EOF/;
    const logBefore = (await pgServer.logText()).length;
    const w = await world("native");
    try {
      expect(w.emulator.sessions()).toHaveLength(1); // probed once, when new
      const afterProbe = (await pgServer.logText()).slice(logBefore);
      expect(afterProbe).not.toMatch(complaints);
      // The check can see a complaint: SSLRequest answered, then the connection dropped, as the old probe did.
      const rude = await w.tunnel.dialer.dial(AbortSignal.timeout(10_000));
      const answered = new Promise((resolve) => rude.once("data", resolve));
      rude.write(Buffer.from([0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]));
      await answered;
      rude.destroy();
      await vi.waitFor(async () => expect((await pgServer.logText()).slice(logBefore)).toMatch(complaints), { timeout: 10_000, interval: 100 });
    } finally {
      await w.close();
    }
  }, 60_000);

  /** The session in a slot, carrying what the pool keeps. */
  const slotSession = (w: World) => w.tunnel.status().sessionIds[0]!;
  it.each([
    { kept: "a parked connection", emulator: {}, pool: { idle: 4, idleTimeoutMs: 600_000 }, count: (w: World) => w.proxy.stats().parked, carrier: slotSession },
    { kept: "a warm spare", emulator: {}, pool: { idle: 0, idleTimeoutMs: 600_000, spares: 1 }, count: (w: World) => w.proxy.stats().spares, carrier: slotSession },
    {
      // The spent single-use session left its slot and drains: no liveness check reaches it.
      kept: "a parked connection (old agent)",
      emulator: { agentVersion: "3.0.100.0" },
      pool: { idle: 4, idleTimeoutMs: 600_000 },
      count: (w: World) => w.proxy.stats().parked,
      carrier: (w: World) => w.tunnel.status().sessions.find((session) => session.draining && session.activeStreams === 1)!.id,
    },
  ])("after the machine slept, $kept on a session that died meanwhile is not used: the next client logs in on the replacement session", async ({ emulator, pool, count, carrier }) => {
    // The supervisor's clock is manual (its beat never runs by itself); the data channel's timeouts run on real time.
    const clock = new ManualClock(Date.now());
    const w = await world("native", emulator, { pool }, { clock, channel: { ...FAST.channel, clock: systemClock } });
    // Without the check the second client's login or query would wait on the dead session: fail it well before the test's timeout.
    const client = () => new pg.Client({ host: "127.0.0.1", port: w.port, user: "someone", database: "orders", ssl: false, connectionTimeoutMillis: 20_000, query_timeout: 20_000 });
    try {
      const first = client();
      await first.connect();
      const firstPid = (await first.query("SELECT pg_backend_pid() AS pid")).rows[0].pid as number;
      await first.end();
      await vi.waitFor(() => expect(count(w)).toBe(1), { timeout: 10_000 });
      const deadSession = carrier(w);
      // The lid closes; the network changes; the session carries nothing any more. Nothing has noticed yet.
      w.emulator.setFaults({ sessionId: deadSession }, { blackHole: true });
      clock.sleep(60_000);

      const second = client();
      second.on("error", () => {});
      await second.connect();
      const secondPid = (await second.query("SELECT pg_backend_pid() AS pid")).rows[0].pid as number;
      await second.end();
      expect(secondPid).not.toBe(firstPid);
      // A draining session (old agent) leaves the status once its close is done.
      await vi.waitFor(() => expect(w.tunnel.status().sessionIds).not.toContain(deadSession), { timeout: 10_000 });
      expect(w.proxy.stats().failedLogins).toBe(0);
    } finally {
      await w.close();
    }
  }, 60_000);

  it("old agents: single-connection mode, one session per connection", async () => {
    const w = await world("native", { agentVersion: "3.0.100.0" });
    try {
      for (let i = 0; i < 3; i++) {
        expect(await query(w.port, "SELECT current_user AS u")).toEqual([{ u: "iam_user" }]);
      }
      const sessions = w.emulator.sessions();
      expect(sessions.every((s) => s.mode === "single" || s.mode === null)).toBe(true);
      // Each connection used its own session, and used sessions were terminated.
      expect(sessions.filter((s) => s.mode === "single").length).toBeGreaterThanOrEqual(3);
      // It works, but GUIs that open several connections would not: status says so, with the fix.
      const status = w.tunnel.status();
      expect(status.state).toBe("degraded");
      expect(status.warnings).toHaveLength(1);
      expect(status.warnings[0]!.message).toContain("the SSM agent on i-0e1d2c3b4a5968778 is version 3.0.100.0, too old to multiplex");
      expect(status.warnings[0]!.fix).toContain("update the SSM agent on i-0e1d2c3b4a5968778");
    } finally {
      await w.close();
    }
  }, 60_000);

  it("old agents: the warning is the instance's (kept while a spent session is replaced), and StartSession is spent only on client connections: no probe, no warm spare", async () => {
    const w = await world("native", { agentVersion: "3.0.100.0" }, { pool: { idle: 0, idleTimeoutMs: 60_000, spares: 1 } });
    try {
      // One session, waiting for a client: nothing dialed the database through it.
      expect(w.emulator.sessions()).toHaveLength(1);
      const warnings = w.tunnel.status().warnings;
      expect(warnings.map((warning) => warning.fix)).toEqual([expect.stringContaining("update the SSM agent on i-0e1d2c3b4a5968778")]);
      // A connection spends the session: its slot is empty until the replacement's StartSession (in flight now)
      // returns. The warning belongs to the bastion, so status keeps it meanwhile.
      const stream = await w.tunnel.dialer.dial(AbortSignal.timeout(10_000));
      expect(w.tunnel.status().sessions.filter((session) => !session.draining)).toEqual([]);
      expect(w.tunnel.status().warnings).toEqual(warnings);
      stream.destroy();

      for (let i = 0; i < 3; i++) expect(await query(w.port, "SELECT 1 AS n")).toEqual([{ n: 1 }]);
      await vi.waitFor(() => expect(w.tunnel.status().sessions.filter((session) => !session.draining)).toHaveLength(1), { timeout: 10_000 });
      // Four connections (the dial above, three clients), a session each, and the one waiting for the next client.
      expect(w.emulator.sessions()).toHaveLength(5);
      expect(w.proxy.stats().spares).toBe(0);
      expect(w.tunnel.status().warnings).toEqual(warnings);
    } finally {
      await w.close();
    }
  }, 60_000);
});

describe.runIf(pluginOnPath())("Postgres end to end through the official plugin", () => {
  it("logs in with IAM over verify-full TLS through session-manager-plugin", async () => {
    const w = await world("plugin");
    try {
      expect(await query(w.port, "SELECT current_user AS u")).toEqual([{ u: "iam_user" }]);
    } finally {
      await w.close();
    }
  }, 60_000);
});

if (!pluginOnPath()) {
  describe("Postgres end to end through the official plugin", () => {
    it.skip("skipped: session-manager-plugin is not on PATH (install it to run the plugin driver end to end)", () => {});
  });
}
