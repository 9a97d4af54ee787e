import { join } from "node:path";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { IamTokenCache, staticCredentialProvider } from "@rdsd/iam";
import { makeRdsLikeTls, startPostgres, type PostgresServer, type RdsLikeTls } from "@rdsd/testkit";
import { startRdsFront, type RdsFront } from "./rds-front.js";
import { rdsTokenProblem } from "./rds-token.js";

// The demo's RDS stand-in with a real TLS client (node-postgres) and a real PostgreSQL behind it.
const HOST = "orders-dev.abc123xyz.eu-west-2.rds.amazonaws.com";
const keys = { accessKeyId: "AKIDFRONTTEST0000001", secretAccessKey: "front-test-secret-not-a-real-key-00000001" };
let rds: RdsLikeTls;
let postgres: PostgresServer;
let front: RdsFront;

beforeAll(async () => {
  rds = await makeRdsLikeTls(HOST);
  postgres = await startPostgres();
  await postgres.admin("CREATE ROLE iam_dev LOGIN");
  front = await startRdsFront({
    certificate: { certPem: rds.certPem, keyPem: rds.keyPem },
    port: 5432,
    postgresSocket: join(postgres.socketDir, `.s.PGSQL.${postgres.port}`),
    checkToken: (token, host, user) => (host === HOST ? rdsTokenProblem(token, { host, port: 5432, user, region: "eu-west-2", ...keys, now: new Date() }) : `unknown host ${host}`),
  });
});

afterAll(async () => {
  await front?.close();
  await postgres?.stop();
  await rds?.cleanup();
});

function client(password: string, ssl: boolean | object = { ca: rds.caPem, servername: HOST }) {
  return new pg.Client({ host: "127.0.0.1", port: front.port, user: "iam_dev", database: "postgres", password, ssl });
}

describe("the demo's RDS front", () => {
  it("lets a valid IAM token through to PostgreSQL", async () => {
    const tokens = new IamTokenCache({ credentials: staticCredentialProvider(keys) });
    const { token } = await tokens.getToken({ host: HOST, port: 5432, user: "iam_dev", region: "eu-west-2" });
    const c = client(token);
    await c.connect();
    expect((await c.query<{ u: string }>("SELECT current_user AS u")).rows[0]!.u).toBe("iam_dev");
    await c.end();
  });

  it("refuses a password that is not a valid token, as RDS does", async () => {
    await expect(client("hunter2").connect()).rejects.toThrow('PAM authentication failed for user "iam_dev"');
  });

  it("refuses clients without TLS", async () => {
    await expect(client("x", false).connect()).rejects.toThrow(/SSL is required/);
  });
});
