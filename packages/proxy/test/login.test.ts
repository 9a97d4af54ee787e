import pg from "pg";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { createCertificateAuthority } from "@rdsd/certs";
import { DirectDialer, passwordAuth, type UpstreamAuth } from "@rdsd/proxy";
import { recordingPlainServer, recordingTlsServer } from "@rdsd/testkit";
import { RDS_HOST, startProxyWorld, TEST_CREDENTIALS, type ProxyWorld } from "./fixture.js";

// Tokens are SigV4 presigned URLs: with a frozen clock and fixed keys, the right token is known in advance.
// Frozen at the real time (certificates issued during the tests are checked against the real clock by OpenSSL).
const FROZEN_TIME = new Date(Math.floor(Date.now() / 1000) * 1000);

let world: ProxyWorld;

beforeAll(async () => {
  world = await startProxyWorld();
  vi.useFakeTimers({ toFake: ["Date"], now: FROZEN_TIME });
  // The role's password is exactly the token for the RDS host, port 5432, iam_user, eu-west-2, now.
  const token = await world.expectedToken("iam_user");
  await world.pg.admin(`ALTER ROLE iam_user PASSWORD '${token}'`);
});

afterAll(async () => {
  vi.useRealTimers();
  await world?.close();
});

async function connectThrough(port: number, options: Partial<pg.ClientConfig> = {}): Promise<pg.Client> {
  const client = new pg.Client({ host: "127.0.0.1", port, user: "someone", database: "orders", ssl: false, ...options });
  await client.connect();
  return client;
}

/** Connects and expects a refusal; returns the server's error as the client saw it. */
async function refusal(port: number, options: Partial<pg.ClientConfig> = {}): Promise<pg.DatabaseError> {
  const client = new pg.Client({ host: "127.0.0.1", port, user: "someone", database: "orders", ssl: false, ...options });
  client.on("error", () => {});
  try {
    await client.connect();
  } catch (err) {
    return err as pg.DatabaseError;
  } finally {
    await client.end().catch(() => {});
  }
  throw new Error("the connection was expected to fail");
}

describe("IAM login through the proxy", () => {
  it("logs in with exactly the token signed for the RDS host and port 5432", async () => {
    const { port, stop } = await world.startProxy({ user: "iam_user", auth: world.iam("iam_user") });
    const client = await connectThrough(port);
    const { rows } = await client.query("SELECT current_user AS u, current_database() AS d, ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()");
    expect(rows[0]).toEqual({ u: "iam_user", d: "orders", ssl: true });
    await client.end();
    await stop();
  });

  it("fails when the token is signed for another host or port (the server checks it)", async () => {
    // Same user and keys, but the role's password is a token for the tunnel's local address: the proxy's is refused.
    const wrong = await world.expectedToken("iam_other", { host: "localhost", port: 6432 });
    await world.pg.admin(`ALTER ROLE iam_other PASSWORD '${wrong}'`);
    const { port, stop } = await world.startProxy({ user: "iam_other", auth: world.iam("iam_other") });
    const err = await refusal(port);
    expect(err.code).toBe("28P01");
    expect(err.message).toContain("the server rejected the IAM token");
    expect(err.hint).toContain("rds_iam");
    // What was signed is explained, and the token itself appears nowhere.
    expect(err.detail).toContain(`host ${RDS_HOST}, port 5432, user iam_other, region eu-west-2`);
    const token = await world.expectedToken("iam_other");
    for (const text of [err.message, err.detail ?? "", err.hint ?? ""]) expect(text).not.toContain(token.slice(0, 60));
    await stop();
  });

  it("shares one signing between 50 concurrent connects", async () => {
    const before = world.tokens.describe().find((s) => s.user === "iam_user")?.signings ?? 0;
    const { port, stop } = await world.startProxy({ user: "iam_user", auth: world.iam("iam_user") });
    const clients = await Promise.all(Array.from({ length: 50 }, () => connectThrough(port)));
    const results = await Promise.all(clients.map((c) => c.query("SELECT current_user AS u")));
    expect(results.every((r) => r.rows[0].u === "iam_user")).toBe(true);
    await Promise.all(clients.map((c) => c.end()));
    const after = world.tokens.describe().find((s) => s.user === "iam_user")!.signings;
    expect(after - before).toBeLessThanOrEqual(1);
    await stop();
  });

  it("tells a user without rds_iam (server asks for SCRAM) to grant it", async () => {
    const { port, stop } = await world.startProxy({ user: "scram_user", auth: world.iam("scram_user") });
    const err = await refusal(port);
    expect(err.message).toContain('database user "scram_user" does not use IAM authentication');
    expect(err.message).toContain("SCRAM-SHA-256");
    expect(err.hint).toContain('GRANT rds_iam TO "scram_user"');
    await stop();
  });

  it("reports a credential failure with its fix", async () => {
    const failing: UpstreamAuth = {
      method: "iam",
      secret: async () => {
        const { iamAuth } = await import("@rdsd/proxy");
        const broken = iamAuth({ getToken: () => Promise.reject(Object.assign(new Error("Token is expired"), { name: "CredentialsProviderError" })) }, { host: RDS_HOST, port: 5432, user: "iam_user", region: "eu-west-2" }, () => ({ message: "SSO session for profile dev-sso expired", fix: "run `aws sso login --profile dev-sso`" }));
        return broken.secret();
      },
    };
    const { port, stop } = await world.startProxy({ user: "iam_user", auth: failing });
    const err = await refusal(port);
    expect(err.message).toBe("cannot sign an IAM token: SSO session for profile dev-sso expired");
    expect(err.hint).toBe("run `aws sso login --profile dev-sso`");
    await stop();
  });
});

describe("password login through the proxy", () => {
  it.each([
    ["scram_user", "scram-secret", "SCRAM-SHA-256"],
    ["md5_user", "md5-secret", "MD5"],
    ["clear_user", "clear-secret", "cleartext"],
  ])("logs in as %s with %s (%s)", async (user, secret) => {
    const { port, stop } = await world.startProxy({ user, auth: passwordAuth({ env: "RDSD_TEST_PW" }, { RDSD_TEST_PW: secret }) });
    const client = await connectThrough(port, { database: "postgres" });
    expect((await client.query("SELECT current_user AS u")).rows[0].u).toBe(user);
    await client.end();
    await stop();
  });

  it("reports a wrong password as the server's refusal with a fix", async () => {
    const { port, stop } = await world.startProxy({ user: "scram_user", auth: passwordAuth({ env: "PW" }, { PW: "wrong" }) });
    const err = await refusal(port, { database: "postgres" });
    expect(err.code).toBe("28P01");
    expect(err.message).toContain("the server rejected the password");
    expect(err.hint).toContain("auth.password");
    await stop();
  });

  it("reports a missing password variable", async () => {
    const { port, stop } = await world.startProxy({ user: "scram_user", auth: passwordAuth({ env: "RDSD_UNSET_PW" }, {}) });
    const err = await refusal(port);
    expect(err.message).toContain("RDSD_UNSET_PW is not set");
    await stop();
  });
});

describe("upstream TLS refusals: the token never leaves the proxy", () => {
  async function tokenFor(user: string) {
    return (await world.tokens.getToken({ host: RDS_HOST, port: 5432, user, region: "eu-west-2" })).token;
  }

  it("refuses a certificate from another CA", async () => {
    const otherCa = await createCertificateAuthority({ commonName: "Impostor CA" });
    const impostor = await otherCa.issueServerCertificate({ dnsNames: [RDS_HOST] });
    const server = await recordingTlsServer(impostor);
    const { port, stop } = await world.startProxy({ user: "iam_user", auth: world.iam("iam_user"), dialer: new DirectDialer("127.0.0.1", server.port) });
    const err = await refusal(port);
    expect(err.message).toContain(`TLS: certificate of ${RDS_HOST} is not signed by a trusted CA`);
    expect(server.connectionCount()).toBe(1);
    expect(server.handshakeCompleted()).toBe(false);
    expect(server.received().length).toBe(0);
    expect(server.received().includes(Buffer.from(await tokenFor("iam_user")))).toBe(false);
    await stop();
    await server.close();
  });

  it("refuses a certificate for another host name, signed by the right CA", async () => {
    const wrongName = await world.rds.ca.issueServerCertificate({ dnsNames: ["billing.def456.eu-west-2.rds.amazonaws.com"] });
    const server = await recordingTlsServer(wrongName);
    const { port, stop } = await world.startProxy({ user: "iam_user", auth: world.iam("iam_user"), dialer: new DirectDialer("127.0.0.1", server.port) });
    const err = await refusal(port);
    expect(err.message).toBe(`TLS: certificate does not match ${RDS_HOST}`);
    expect(server.connectionCount()).toBe(1);
    expect(server.received().length).toBe(0);
    await stop();
    await server.close();
  });

  it("refuses a server that answers N to SSLRequest: no downgrade", async () => {
    const server = await recordingPlainServer({ answerSsl: "N" });
    const { port, stop } = await world.startProxy({ user: "iam_user", auth: world.iam("iam_user"), dialer: new DirectDialer("127.0.0.1", server.port) });
    const err = await refusal(port);
    expect(err.message).toContain("refused TLS (answered 'N' to SSLRequest)");
    expect(server.connectionCount()).toBe(1);
    expect(server.received().length).toBe(0);
    await stop();
    await server.close();
  });

  it("the recording server would catch a leak: a client that skips verification sends it the password", async () => {
    // Control for the three tests above: proves the recorder records what a careless client sends.
    const server = await recordingTlsServer(await world.rds.ca.issueServerCertificate({ dnsNames: ["elsewhere.example"] }));
    const careless = new pg.Client({ host: "127.0.0.1", port: server.port, user: "u", password: "leaked-password", ssl: { rejectUnauthorized: false } });
    careless.on("error", () => {});
    careless.connect().catch(() => {});
    await server.waitFor((b) => b.includes(Buffer.from("leaked-password")), 10_000);
    await careless.end().catch(() => {});
    await server.close();
  });

  it("reports an unreachable database with a fix", async () => {
    const { port, stop } = await world.startProxy({ user: "iam_user", auth: world.iam("iam_user"), dialer: new DirectDialer("127.0.0.1", 1) });
    const err = await refusal(port);
    expect(err.message).toBe("connection to 127.0.0.1:1 refused");
    expect(err.hint).toContain("check that the database is running");
    await stop();
  });
});

void TEST_CREDENTIALS;
