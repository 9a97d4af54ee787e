import { existsSync } from "node:fs";
import { randomBytes } from "node:crypto";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { makeRdsLikeTls, pgClientEnv, postgresBinDir, processesWorkingIn, runCommand, startPostgres, type PostgresServer, type RdsLikeTls } from "./index.js";

const RDS_HOST = "orders-dev.abc123xyz.eu-west-2.rds.amazonaws.com";
const ROLE = "app_user";
// IAM auth tokens are ~1.2 KB; the role's password is one of that size.
const TOKEN = randomBytes(900).toString("base64").slice(0, 1200);

let tlsFiles: RdsLikeTls;
let server: PostgresServer;

beforeAll(async () => {
  tlsFiles = await makeRdsLikeTls(RDS_HOST);
  server = await startPostgres({
    tls: { certPem: tlsFiles.certPem, keyPem: tlsFiles.keyPem },
    // Like RDS with IAM: TLS only, and the server asks for the password in cleartext.
    hba: [`hostssl all ${ROLE} 127.0.0.1/32 password`],
    settings: { password_encryption: "scram-sha-256", log_connections: "on" },
    maxConnections: 50,
  });
  await server.admin(`CREATE ROLE ${ROLE} LOGIN PASSWORD '${TOKEN}'`);
});
afterAll(async () => {
  await server?.stop();
  await tlsFiles?.cleanup();
});

function tlsClient(password: string, servername = RDS_HOST): pg.Client {
  return new pg.Client({
    host: server.host,
    port: server.port,
    user: ROLE,
    database: "postgres",
    password,
    ssl: { ca: tlsFiles.caPem, servername, rejectUnauthorized: true },
  });
}

describe("startPostgres", () => {
  it("runs a real server of the installed version, administered over the unix socket", async () => {
    expect(server.binDir).toBe(postgresBinDir());
    expect(server.binDir).toBe(`/usr/lib/postgresql/${server.version}/bin`);
    const { rows } = await server.admin("SELECT current_setting('server_version_num')::int AS num, current_setting('max_connections') AS max, current_user AS who");
    expect(Math.floor(rows[0].num / 10000)).toBe(server.version);
    expect(rows[0].max).toBe("50");
    expect(rows[0].who).toBe(server.superuser);
    expect(await server.logText()).toContain("ready to accept connections");
  });

  it("stores the 1200-character password as SCRAM", async () => {
    const { rows } = await server.admin("SELECT rolpassword FROM pg_authid WHERE rolname = $1", [ROLE]);
    expect(rows[0].rolpassword).toMatch(/^SCRAM-SHA-256\$/);
    expect(TOKEN).toHaveLength(1200);
  });

  it("accepts node-postgres over verified TLS with the long cleartext password", async () => {
    const client = tlsClient(TOKEN);
    await client.connect();
    try {
      const { rows } = await client.query("SELECT current_user AS who, ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()");
      expect(rows[0]).toEqual({ who: ROLE, ssl: true });
    } finally {
      await client.end();
    }
    // The hba line with method "password" made the server ask for the cleartext password.
    expect(await server.logText()).toMatch(new RegExp(`connection authenticated: identity="${ROLE}" method=password`));
  });

  it("refuses a wrong password and a certificate checked against the wrong host name", async () => {
    await expect(tlsClient(TOKEN.replace(/^./, (c) => (c === "A" ? "B" : "A"))).connect()).rejects.toMatchObject({ code: "28P01" });
    await expect(tlsClient(TOKEN, "other.abc123xyz.eu-west-2.rds.amazonaws.com").connect()).rejects.toMatchObject({
      code: "ERR_TLS_CERT_ALTNAME_INVALID",
    });
  });

  it("accepts psql with sslmode=verify-full against the test CA", async () => {
    const conninfo = (host: string) =>
      `host=${host} hostaddr=127.0.0.1 port=${server.port} user=${ROLE} dbname=postgres sslmode=verify-full sslrootcert=${tlsFiles.caPath}`;
    const env = pgClientEnv({ PGPASSWORD: TOKEN });
    const ok = await runCommand("psql", [conninfo(RDS_HOST), "-XAtc", "SELECT current_user || ' ' || ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"], { env, timeoutMs: 10_000 });
    expect(ok).toMatchObject({ code: 0, stdout: `${ROLE} true\n` });

    const wrongHost = await runCommand("psql", [conninfo("wrong.example.com"), "-XAtc", "SELECT 1"], { env, timeoutMs: 10_000 });
    expect(wrongHost.code).not.toBe(0);
    expect(wrongHost.stderr).toMatch(/does not match host name "wrong\.example\.com"/);
    expect(wrongHost.stderr).not.toContain(TOKEN);
  });

  it("stop() shuts the server down, leaves no postgres process and removes its directory", async () => {
    const root = server.socketDir;
    const postmasterPids = await processesWorkingIn(server.dataDir);
    expect(postmasterPids.length).toBeGreaterThan(0); // postmaster and its background workers

    await server.stop();
    expect(await processesWorkingIn(server.dataDir)).toEqual([]);
    expect(existsSync(root)).toBe(false);
    await expect(server.stop()).resolves.toBeUndefined(); // idempotent
    await expect(server.admin("SELECT 1")).rejects.toThrow(/stopped/);
  });
});
