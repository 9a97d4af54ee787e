import { once } from "node:events";
import net from "node:net";
import tls from "node:tls";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { decodeErrorFields, type BackendFrame } from "@rdsd/pg-wire";
import { passwordAuth } from "@rdsd/proxy";
import { RecordingLogger, startProxyWorld, untilIdle, type ProxyWorld, type RunningProxy } from "./fixture.js";
import { cancelRequest, firstColumn, gssencRequest, query, RawConnection, sslRequest, startupMessage, types } from "./raw.js";

// The proxy logs in upstream as scram_user whatever the client says; the client's own user is a local name.
const LOGIN = { user: "someone", database: "postgres" };
const S = "S".charCodeAt(0);
const N = "N".charCodeAt(0);

let world: ProxyWorld;
let logger: RecordingLogger;
let proxy: RunningProxy;

beforeAll(async () => {
  world = await startProxyWorld();
  logger = new RecordingLogger();
  proxy = await world.startProxy({ user: "scram_user", auth: passwordAuth({ env: "PW" }, { PW: "scram-secret" }), logger });
});

afterAll(async () => {
  await world?.close();
});

// Every case must leave the proxy without client connections, whatever the client did.
afterEach(async () => {
  expect(RawConnection.destroyAll()).toBe(0);
  await untilIdle(proxy.proxy);
});

function localTls(extra: tls.ConnectionOptions = {}): tls.ConnectionOptions {
  return { ca: world.localCa.certPem, servername: "localhost", ...extra };
}

/** Reads the proxy's greeting after a StartupMessage: AuthenticationOk first, ReadyForQuery last. */
async function loggedIn(conn: RawConnection): Promise<BackendFrame[]> {
  const frames = await conn.framesUntil("Z");
  const auth = frames.find((f) => f.type === "R");
  expect(auth?.body.readUInt32BE(0)).toBe(0); // AuthenticationOk: the proxy did the real login
  expect(frames.some((f) => f.type === "K")).toBe(true);
  return frames;
}

/** Runs a query on a logged-in connection; the first column of each row. */
async function ask(conn: RawConnection, sql: string): Promise<string[]> {
  conn.send(query(sql));
  const frames = await conn.framesUntil("Z");
  const error = frames.find((f) => f.type === "E");
  if (error) throw new Error(`query failed: ${decodeErrorFields(error.body).message}`);
  return firstColumn(frames);
}

async function upstreamIsTls(conn: RawConnection): Promise<boolean> {
  const [ssl] = await ask(conn, "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()");
  return ssl === "t";
}

describe("GSSENCRequest", () => {
  it("is answered N; SSLRequest, TLS and a startup then log in", async () => {
    const plain = await RawConnection.open(proxy.port);
    plain.send(gssencRequest());
    expect(await plain.byte()).toBe(N);
    plain.send(sslRequest());
    expect(await plain.byte()).toBe(S);
    const conn = await plain.startTls(localTls());
    expect((conn.socket as tls.TLSSocket).authorized).toBe(true);
    conn.send(startupMessage(LOGIN));
    await loggedIn(conn);
    expect(await ask(conn, "SELECT current_user")).toEqual(["scram_user"]);
    expect(await upstreamIsTls(conn)).toBe(true);
    await conn.terminate();
  });

  it("is answered N; a plain StartupMessage then logs in", async () => {
    const conn = await RawConnection.open(proxy.port);
    conn.send(gssencRequest());
    expect(await conn.byte()).toBe(N);
    conn.send(startupMessage(LOGIN));
    await loggedIn(conn);
    expect(await ask(conn, "SELECT 1")).toEqual(["1"]);
    expect(await upstreamIsTls(conn)).toBe(true);
    await conn.terminate();
  });

  it("a second GSSENCRequest is a protocol violation", async () => {
    const conn = await RawConnection.open(proxy.port);
    conn.send(gssencRequest());
    expect(await conn.byte()).toBe(N);
    conn.send(gssencRequest());
    const error = await conn.error();
    expect(error).toMatchObject({ severity: "FATAL", code: "08P01", message: "protocol violation: unexpected GSSENCRequest" });
    expect((await conn.rest()).length).toBe(0);
  });
});

describe("direct TLS (sslnegotiation=direct)", () => {
  it("with ALPN postgresql: TLS from the first byte, then startup, login and queries", async () => {
    const conn = await RawConnection.openDirectTls(proxy.port, localTls({ ALPNProtocols: ["postgresql"] }));
    const socket = conn.socket as tls.TLSSocket;
    expect(socket.authorized).toBe(true);
    expect(socket.alpnProtocol).toBe("postgresql");
    conn.send(startupMessage(LOGIN));
    await loggedIn(conn);
    expect(await ask(conn, "SELECT 1")).toEqual(["1"]);
    expect(await upstreamIsTls(conn)).toBe(true);
    await conn.terminate();
  });

  it("without ALPN: closed before any login", async () => {
    const before = proxy.proxy.stats();
    const logins = logger.named("client connected").length;
    let received: Buffer = Buffer.alloc(0);
    try {
      const conn = await RawConnection.openDirectTls(proxy.port, localTls());
      conn.send(startupMessage(LOGIN)); // even with a startup ready, nothing may come back
      received = await conn.rest();
    } catch (err) {
      // The proxy may cut the handshake short: that is a refusal too.
      expect((err as Error).message).toMatch(/socket disconnected|ECONNRESET|EPIPE/);
    }
    expect(received.length).toBe(0);
    await logger.waitFor("client startup refused", { error: 'protocol violation: direct TLS without ALPN "postgresql"' });
    const after = proxy.proxy.stats();
    expect(after.accepted).toBe(before.accepted + 1);
    expect(after.failedLogins).toBe(before.failedLogins);
    expect(logger.named("client connected").length).toBe(logins);
  });

  it("is refused by a proxy without local TLS", async () => {
    const plainOnly = await world.startProxy({ user: "scram_user", auth: passwordAuth({ env: "PW" }, { PW: "scram-secret" }), clientTls: null });
    await expect(RawConnection.openDirectTls(plainOnly.port, localTls({ ALPNProtocols: ["postgresql"] }))).rejects.toThrow();

    // What a TLS client sent first (a handshake record header) is answered as an invalid startup packet.
    const conn = await RawConnection.open(plainOnly.port);
    conn.send(Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03]));
    const error = await conn.error();
    expect(error.code).toBe("08P01");
    expect(error.message).toMatch(/^invalid startup packet: invalid startup packet length \d+/);
    expect((await conn.rest()).length).toBe(0);
    await untilIdle(plainOnly.proxy);
    await plainOnly.stop();
  });
});

describe("CancelRequest for an unknown session", () => {
  it.each([
    ["protocol 3.0, 16 bytes", Buffer.from([1, 2, 3, 4])],
    ["protocol 3.2, 32-byte key", Buffer.alloc(32, 7)],
  ])("%s: closed with nothing sent back", async (_name, key) => {
    const dropped = logger.named("cancel request for an unknown session dropped").length;
    const conn = await RawConnection.open(proxy.port);
    conn.send(cancelRequest(424242, key));
    expect((await conn.rest()).length).toBe(0);
    await logger.waitFor("cancel request for an unknown session dropped");
    expect(logger.named("cancel request for an unknown session dropped").length).toBe(dropped + 1);

    // The proxy still serves.
    const next = await RawConnection.open(proxy.port);
    next.send(startupMessage(LOGIN));
    await loggedIn(next);
    await next.terminate();
    // The cancel's socket is closed on the proxy's side too once the client has closed its end.
    await untilIdle(proxy.proxy);
  });

  it("a client that resets the connection after the proxy's EOF leaves no socket behind", async () => {
    // Half-open allowed, so the client does not answer the proxy's FIN with its own before the reset.
    const socket = net.connect({ port: proxy.port, host: "127.0.0.1", allowHalfOpen: true });
    await once(socket, "connect");
    socket.write(cancelRequest(424242, Buffer.from([1, 2, 3, 4])));
    socket.resume();
    await once(socket, "end");
    // An RST instead of a FIN: the proxy notices it only if it still reads from the socket.
    socket.resetAndDestroy();
    await untilIdle(proxy.proxy);
  });

  it.each(["closes", "resets"])("inside TLS, a client that %s after the proxy's EOF leaves no socket behind", async (how) => {
    const plain = await RawConnection.open(proxy.port);
    plain.send(sslRequest());
    expect(await plain.byte()).toBe(S);
    const secured = tls.connect({ socket: (plain as unknown as { socket: net.Socket }).socket, ...localTls() });
    await once(secured, "secureConnect");
    const since = logger.mark();
    secured.write(cancelRequest(424242, Buffer.from([1, 2, 3, 4])));
    if (how === "closes") {
      secured.resume();
      await once(secured, "end");
      secured.end();
    } else {
      // The proxy has ended its side once it has dealt with the cancel. Closing with its close_notify still
      // unread makes the kernel send an RST instead of a FIN.
      await logger.waitFor("cancel request for an unknown session dropped", {}, 10_000, since);
      secured.destroy();
    }
    await untilIdle(proxy.proxy);
  });
});

describe("protocol 3.2 and _pq_ options", () => {
  it("relays the server's NegotiateProtocolVersion before AuthenticationOk, then logs in", async () => {
    const conn = await RawConnection.open(proxy.port);
    conn.send(startupMessage({ ...LOGIN, "_pq_.something": "on" }, 2));
    const frames = await loggedIn(conn);
    expect(types(frames).indexOf("v")).toBe(0);
    expect(types(frames).indexOf("R")).toBe(1);
    const negotiate = frames[0]!.body;
    const newestMinor = negotiate.readUInt32BE(0) & 0xffff;
    expect(newestMinor).toBeLessThanOrEqual(2);
    const optionCount = negotiate.readUInt32BE(4);
    const options = negotiate.toString("utf8", 8).split("\0").slice(0, optionCount);
    expect(options).toEqual(["_pq_.something"]);
    expect(await ask(conn, "SELECT 1")).toEqual(["1"]);
    await conn.terminate();
  });
});

describe("bytes sent before the login completes", () => {
  it.each([false, true])("a query pipelined with the startup reaches the server (TLS: %s)", async (useTls) => {
    let conn = await RawConnection.open(proxy.port);
    if (useTls) {
      conn.send(sslRequest());
      expect(await conn.byte()).toBe(S);
      conn = await conn.startTls(localTls());
    }
    // One write: the proxy reads the query together with the startup and must hold it until the login is done.
    conn.send(startupMessage(LOGIN), query("SELECT 'pipelined'"));
    await loggedIn(conn);
    const frames = await conn.framesUntil("Z");
    expect(types(frames)).toBe("TDCZ");
    expect(firstColumn(frames)).toEqual(["pipelined"]);
    await conn.terminate();
  });
});

describe("replication connections", () => {
  it("replication=database is refused with a FATAL 0A000 that says why", async () => {
    const conn = await RawConnection.open(proxy.port);
    conn.send(startupMessage({ ...LOGIN, replication: "database" }));
    const error = await conn.error();
    expect(error).toMatchObject({ severity: "FATAL", code: "0A000" });
    expect(error.message).toContain("replication");
    expect(error.hint).toContain("replication");
    expect((await conn.rest()).length).toBe(0);
  });

  it("replication=false is an ordinary connection", async () => {
    const conn = await RawConnection.open(proxy.port);
    conn.send(startupMessage({ ...LOGIN, replication: "false" }));
    await loggedIn(conn);
    expect(await ask(conn, "SELECT 1")).toEqual(["1"]);
    await conn.terminate();
  });
});

describe("SSLRequest misuse", () => {
  it("bytes pipelined after SSLRequest: a protocol-violation error in clear, no TLS", async () => {
    const conn = await RawConnection.open(proxy.port);
    conn.send(sslRequest(), startupMessage(LOGIN));
    // The first byte back is an ErrorResponse, never 'S'.
    const error = await conn.error();
    expect(error).toMatchObject({ severity: "FATAL", code: "08P01", message: "protocol violation: unexpected data after SSLRequest" });
    expect((await conn.rest()).length).toBe(0);
  });

  it("an SSLRequest inside TLS is a protocol violation, told inside TLS", async () => {
    const plain = await RawConnection.open(proxy.port);
    plain.send(sslRequest());
    expect(await plain.byte()).toBe(S);
    const conn = await plain.startTls(localTls());
    conn.send(sslRequest());
    const error = await conn.error();
    expect(error).toMatchObject({ code: "08P01", message: "protocol violation: SSLRequest received inside TLS" });
    expect((await conn.rest()).length).toBe(0);
  });
});
