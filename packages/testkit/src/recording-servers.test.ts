import { once } from "node:events";
import { connect } from "node:net";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { makeRdsLikeTls, readBytes, recordingPlainServer, recordingTlsServer, type RdsLikeTls } from "./index.js";

const RDS_HOST = "orders-dev.abc123xyz.eu-west-2.rds.amazonaws.com";
const TOKEN = `${RDS_HOST}:5432/?Action=connect&DBUser=app&X-Amz-Signature=${"ab".repeat(600)}`;
const SSL_REQUEST = Buffer.from([0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]);

let rds: RdsLikeTls;
beforeAll(async () => {
  rds = await makeRdsLikeTls(RDS_HOST);
});
afterAll(() => rds?.cleanup());

/** Starts a node-postgres connection attempt; resolves with its error (these servers never let one succeed). */
function pgConnect(port: number, ssl: pg.ClientConfig["ssl"]): Promise<Error & { code?: string }> {
  const client = new pg.Client({ host: "127.0.0.1", port, user: "app", database: "postgres", password: TOKEN, ssl, connectionTimeoutMillis: 5_000 });
  client.on("error", () => {});
  return client.connect().then(
    () => Promise.reject(new Error("unexpectedly connected")),
    (error: Error) => error,
  );
}

describe("recordingTlsServer", () => {
  it("receives the password of a client that trusts its certificate, decrypted", async () => {
    const server = await recordingTlsServer(rds);
    try {
      const attempt = pgConnect(server.port, { ca: rds.caPem, servername: RDS_HOST, rejectUnauthorized: true });
      await server.waitFor((bytes) => bytes.includes(TOKEN));
      await server.close(); // hangs up on the client, which is left waiting for AuthenticationOk
      await attempt;
      expect(server.handshakeCompleted()).toBe(true);
      expect(server.received().includes("user\0app\0")).toBe(true); // the StartupMessage
    } finally {
      await server.close();
    }
  });

  it("records nothing from a client that refuses its certificate (wrong CA or wrong host name)", async () => {
    const server = await recordingTlsServer(rds);
    const otherCa = await makeRdsLikeTls(RDS_HOST);
    try {
      expect(await pgConnect(server.port, { ca: otherCa.caPem, servername: RDS_HOST, rejectUnauthorized: true })).toMatchObject({
        code: "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
      });
      expect(await pgConnect(server.port, { ca: rds.caPem, servername: "evil.example.com", rejectUnauthorized: true })).toMatchObject({
        code: "ERR_TLS_CERT_ALTNAME_INVALID",
      });
      expect(server.connectionCount()).toBe(2);
      expect(server.handshakeCompleted()).toBe(false);
      expect(server.received()).toHaveLength(0);
    } finally {
      await server.close();
      await otherCa.cleanup();
    }
  });

  it("records plaintext sent by a client that skips the SSLRequest", async () => {
    const server = await recordingTlsServer(rds);
    try {
      const socket = connect(server.port, "127.0.0.1");
      await once(socket, "connect");
      socket.write(startupMessage("app"));
      expect(await readBytes(socket, 9)).toEqual(Buffer.from([0x52, 0, 0, 0, 8, 0, 0, 0, 3]));
      socket.write(passwordMessage(TOKEN));
      await server.waitFor((bytes) => bytes.includes(TOKEN));
      expect(server.handshakeCompleted()).toBe(false);
      socket.destroy();
    } finally {
      await server.close();
    }
  });
});

describe("recordingPlainServer", () => {
  it("answers SSLRequest with N, asks for a cleartext password and records what follows", async () => {
    const server = await recordingPlainServer({ answerSsl: "N" });
    try {
      const socket = connect(server.port, "127.0.0.1");
      await once(socket, "connect");
      socket.write(SSL_REQUEST);
      expect((await readBytes(socket, 1)).toString()).toBe("N");
      socket.write(startupMessage("app"));
      expect(await readBytes(socket, 9)).toEqual(Buffer.from([0x52, 0, 0, 0, 8, 0, 0, 0, 3]));
      socket.write(passwordMessage(TOKEN));
      const received = await server.waitFor((bytes) => bytes.includes(TOKEN));
      expect(received.subarray(0, 8)).toEqual(startupMessage("app").subarray(0, 8)); // the SSLRequest is not recorded
      socket.destroy();
    } finally {
      await server.close();
    }
  });

  it("gets nothing from node-postgres when TLS is required", async () => {
    const server = await recordingPlainServer({ answerSsl: "N" });
    try {
      expect((await pgConnect(server.port, { ca: rds.caPem, servername: RDS_HOST, rejectUnauthorized: true })).message).toMatch(/does not support SSL/);
      expect(server.connectionCount()).toBe(1);
      expect(server.received()).toHaveLength(0);
    } finally {
      await server.close();
    }
  });

  it("times out waitFor with a clear error, and survives garbage", async () => {
    const server = await recordingPlainServer({ answerSsl: "N" });
    try {
      const socket = connect(server.port, "127.0.0.1");
      await once(socket, "connect");
      socket.write(Buffer.from([0xff, 0xff, 0xff, 0xff, 1, 2, 3, 4, 5, 6]));
      await server.waitFor((bytes) => bytes.length === 10);
      await expect(server.waitFor((bytes) => bytes.includes("never"), 50)).rejects.toThrow(/did not arrive within 50 ms/);
      socket.destroy();
    } finally {
      await server.close();
    }
  });
});

function startupMessage(user: string): Buffer {
  const body = Buffer.from(`user\0${user}\0database\0postgres\0\0`);
  const head = Buffer.alloc(8);
  head.writeInt32BE(8 + body.length, 0);
  head.writeInt32BE(196608, 4);
  return Buffer.concat([head, body]);
}

function passwordMessage(password: string): Buffer {
  const body = Buffer.from(`${password}\0`);
  const head = Buffer.alloc(5);
  head.write("p", 0);
  head.writeInt32BE(4 + body.length, 1);
  return Buffer.concat([head, body]);
}
