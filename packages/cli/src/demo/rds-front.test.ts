import { once } from "node:events";
import net from "node:net";
import { join } from "node:path";
import tls from "node:tls";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { IamTokenCache, staticCredentialProvider } from "@rdsd/iam";
import { buildSslRequest, CANCEL_REQUEST_CODE } from "@rdsd/pg-wire";
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

  it("passes a CancelRequest on to PostgreSQL, inside TLS (as rdsd sends it) and plain, as RDS does", async () => {
    const tokens = new IamTokenCache({ credentials: staticCredentialProvider(keys) });
    const { token } = await tokens.getToken({ host: HOST, port: 5432, user: "iam_dev", region: "eu-west-2" });
    for (const overTls of [true, false]) {
      const c = client(token);
      await c.connect();
      const { processID, secretKey } = c as unknown as { processID: number; secretKey: number };
      const sleeping = c.query("SELECT pg_sleep(60)").then(() => "finished", (err: Error) => err.message);
      await expect.poll(async () => (await postgres.admin("SELECT 1 FROM pg_stat_activity WHERE pid = $1 AND query LIKE 'SELECT pg_sleep%'", [processID])).rowCount, { timeout: 10_000 }).toBe(1);
      await sendCancel(processID, secretKey, overTls);
      expect(await sleeping, overTls ? "inside TLS" : "plain").toBe("canceling statement due to user request");
      await c.end();
    }
  });

  it("refuses clients without TLS", async () => {
    await expect(client("x", false).connect()).rejects.toThrow(/SSL is required/);
  });
});

/** A CancelRequest to the front on a connection of its own, as a client (plain) or rdsd (inside TLS) sends it. */
async function sendCancel(processId: number, secretKey: number, overTls: boolean): Promise<void> {
  const cancel = Buffer.alloc(16);
  cancel.writeUInt32BE(16, 0);
  cancel.writeUInt32BE(CANCEL_REQUEST_CODE, 4);
  cancel.writeUInt32BE(processId, 8);
  cancel.writeInt32BE(secretKey, 12);
  const socket = net.connect(front.port, "127.0.0.1");
  await once(socket, "connect");
  let stream: net.Socket | tls.TLSSocket = socket;
  if (overTls) {
    socket.write(buildSslRequest());
    const [answer] = (await once(socket, "data")) as [Buffer];
    expect(answer.toString()).toBe("S");
    stream = tls.connect({ socket, servername: HOST, ca: rds.caPem });
    await once(stream, "secureConnect");
  }
  stream.end(cancel);
  stream.resume();
  await once(stream, "close");
}
