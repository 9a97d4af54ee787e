import pg from "pg";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { readBackendFrame, decodeErrorFields } from "@rdsd/pg-wire";
import { DirectDialer, passwordAuth, type Dialer } from "@rdsd/proxy";
import { seededRandom } from "@rdsd/testkit";
import { RecordingLogger, startProxyWorld, untilIdle, type ProxyWorld, type RunningProxy } from "./fixture.js";
import { cancelRequest, RawConnection, sslRequest, startupMessage } from "./raw.js";

const LOGIN = { user: "someone", database: "postgres" };
const STARTUP_TIMEOUT_MS = 300;

let world: ProxyWorld;
let logger: RecordingLogger;
/** Default startup timeout (10 s): nothing here may depend on it. */
let proxy: RunningProxy;
/** A short startup timeout, for the clients that stop talking. */
let quick: RunningProxy;

beforeAll(async () => {
  world = await startProxyWorld();
  logger = new RecordingLogger();
  const auth = passwordAuth({ env: "PW" }, { PW: "scram-secret" });
  proxy = await world.startProxy({ user: "scram_user", auth, logger });
  quick = await world.startProxy({ user: "scram_user", auth, logger, startupTimeoutMs: STARTUP_TIMEOUT_MS });
});

afterAll(async () => {
  await world?.close();
});

// After every hostile client: nothing left open, nothing logged as unexpected, and the next good client is served.
afterEach(async () => {
  expect(RawConnection.destroyAll()).toBe(0);
  await Promise.all([untilIdle(proxy.proxy), untilIdle(quick.proxy)]);
  expect(logger.entries.filter((e) => e.level === "error")).toEqual([]);
  await expectGoodClient(proxy);
  await expectGoodClient(quick);
  await Promise.all([untilIdle(proxy.proxy), untilIdle(quick.proxy)]);
});

async function expectGoodClient(target: RunningProxy): Promise<void> {
  const client = new pg.Client({ host: "127.0.0.1", port: target.port, ...LOGIN, ssl: false });
  await client.connect();
  expect((await client.query("SELECT current_user AS u")).rows[0].u).toBe("scram_user");
  await client.end();
}

/** A dialer that holds every dial until opened, so a test can act while the proxy is mid-login. */
class GatedDialer implements Dialer {
  private markCalled!: () => void;
  private markOpen!: () => void;
  /** Resolves when the proxy first asks to dial. */
  readonly called = new Promise<void>((resolve) => (this.markCalled = resolve));
  private readonly gate = new Promise<void>((resolve) => (this.markOpen = resolve));

  constructor(private readonly inner: Dialer) {}

  describe(): string {
    return this.inner.describe();
  }

  open(): void {
    this.markOpen();
  }

  async dial(signal: AbortSignal) {
    this.markCalled();
    await this.gate;
    return this.inner.dial(signal);
  }
}

/**
 * Random bytes, shaped now and then to get past the first checks: a TLS record byte (direct TLS path),
 * a plausible packet length (the proxy must wait, then see the close), or a whole protocol-3 packet with
 * random parameter bytes (the parameter parser).
 */
function hostileBytes(random: () => number): Buffer {
  const bytes = Buffer.alloc(1 + Math.floor(random() * 120));
  for (let i = 0; i < bytes.length; i++) bytes[i] = Math.floor(random() * 256);
  const shape = random();
  if (shape < 0.1) {
    bytes[0] = 0x16;
  } else if (shape < 0.25 && bytes.length >= 4) {
    bytes.writeUInt32BE(8 + Math.floor(random() * 9_992), 0);
  } else if (shape < 0.4 && bytes.length >= 8) {
    bytes.writeUInt32BE(bytes.length, 0);
    bytes.writeUInt32BE(0x00030000, 4);
  }
  return bytes;
}

/** Sends bytes, half-closes, and returns everything the proxy sent back before closing. */
async function sendAndCollect(port: number, bytes: Buffer): Promise<Buffer> {
  const conn = await RawConnection.open(port);
  conn.send(bytes);
  conn.socket.end();
  return conn.rest();
}

/**
 * What a client may receive in answer to garbage: nothing, a TLS alert (after a TLS record byte), or exactly
 * one FATAL error: a protocol violation, or the server's refusal if random bytes happened to form a valid startup.
 */
function classify(received: Buffer): "nothing" | "violation" | "fatal" | "tls-alert" | "other" {
  if (received.length === 0) return "nothing";
  if (received[0] === 0x15) return "tls-alert";
  const f = readBackendFrame(received);
  if (f.status !== "ok" || f.frame.type !== "E" || f.length !== received.length) return "other";
  const fields = decodeErrorFields(f.frame.body);
  if (fields.severity !== "FATAL") return "other";
  return fields.code === "08P01" ? "violation" : "fatal";
}

describe("garbage", () => {
  it("random bytes (seeded, 300 rounds) are refused, never crash or block the proxy", async () => {
    const random = seededRandom(0x5eed);
    const outcomes = { nothing: 0, violation: 0, fatal: 0, "tls-alert": 0, other: 0 };
    const odd: string[] = [];
    const BATCHES = 10;
    const PER_BATCH = 30;
    for (let batch = 0; batch < BATCHES; batch++) {
      const rounds = Array.from({ length: PER_BATCH }, () => hostileBytes(random));
      // A good client in the middle of each batch of hostile ones.
      const [received] = await Promise.all([Promise.all(rounds.map((bytes) => sendAndCollect(proxy.port, bytes))), expectGoodClient(proxy)]);
      received.forEach((r, i) => {
        const kind = classify(r);
        outcomes[kind]++;
        if (kind === "other" || (kind === "tls-alert" && rounds[i]![0] !== 0x16)) odd.push(`${rounds[i]!.toString("hex")} -> ${r.toString("hex")}`);
      });
      await untilIdle(proxy.proxy);
    }
    expect(odd).toEqual([]);
    // Most garbage is told it is not a startup packet; waiting for a plausible length ends with the close.
    expect(outcomes.violation).toBeGreaterThan(BATCHES * PER_BATCH * 0.6);
    expect(outcomes.nothing).toBeGreaterThan(0);
    expect(proxy.proxy.stats().connections).toBe(0);
  });

  it("an HTTP request gets a protocol-violation error and a close", async () => {
    const conn = await RawConnection.open(proxy.port);
    conn.send(Buffer.from("GET / HTTP/1.1\r\nHost: localhost\r\nUser-Agent: curl/8\r\n\r\n"));
    const error = await conn.error();
    expect(error).toMatchObject({ severity: "FATAL", code: "08P01" });
    expect(error.message).toBe("invalid startup packet: invalid startup packet length 1195725856 (allowed 8-10000)");
    expect(error.hint).toContain("PostgreSQL client");
    expect((await conn.rest()).length).toBe(0);
  });

  it.each([10_001, 0xffffffff])("a startup length of %d is refused at once, without waiting for the bytes", async (length) => {
    const conn = await RawConnection.open(proxy.port);
    const head = Buffer.alloc(8);
    head.writeUInt32BE(length, 0);
    head.writeUInt32BE(0x00030000, 4);
    conn.send(head);
    const error = await conn.error();
    expect(error).toMatchObject({ severity: "FATAL", code: "08P01", message: `invalid startup packet: invalid startup packet length ${length} (allowed 8-10000)` });
    expect((await conn.rest()).length).toBe(0);
  });

  it("TLS garbage after 'S' ends the connection without a login", async () => {
    const conn = await RawConnection.open(proxy.port);
    conn.send(sslRequest());
    expect(await conn.byte()).toBe("S".charCodeAt(0));
    conn.send(Buffer.from("this is not a TLS ClientHello\r\n".repeat(4)));
    const rest = await conn.rest();
    // At most a TLS alert: never anything in clear, never a login.
    if (rest.length > 0) expect(rest[0]).toBe(0x15);
    await logger.waitFor("client startup refused", { error: /^local TLS handshake failed/ });
  });
});

describe("clients that stop half-way", () => {
  it("a truncated startup packet followed by a close: closed, nothing sent", async () => {
    const whole = startupMessage(LOGIN);
    expect((await sendAndCollect(proxy.port, whole.subarray(0, whole.length - 5))).length).toBe(0);
  });

  it("a truncated startup packet followed by silence: told about the startup timeout, then closed", async () => {
    const conn = await RawConnection.open(quick.port);
    const whole = startupMessage(LOGIN);
    conn.send(whole.subarray(0, whole.length - 5));
    const error = await conn.error(STARTUP_TIMEOUT_MS + 5_000);
    expect(error).toMatchObject({ severity: "FATAL", code: "08P01", message: "the client did not complete its startup in time" });
    expect((await conn.rest()).length).toBe(0);
  });

  it("a silent client: told about the startup timeout within about the timeout, then closed", async () => {
    const started = performance.now();
    const conn = await RawConnection.open(quick.port);
    const error = await conn.error(STARTUP_TIMEOUT_MS + 5_000);
    const waited = performance.now() - started;
    expect(error).toMatchObject({ severity: "FATAL", code: "08P01", message: "the client did not complete its startup in time" });
    expect(error.hint).toContain(`${STARTUP_TIMEOUT_MS} ms`);
    expect(waited).toBeGreaterThanOrEqual(STARTUP_TIMEOUT_MS - 20);
    expect(waited).toBeLessThan(STARTUP_TIMEOUT_MS + 3_000);
    expect((await conn.rest()).length).toBe(0);
  });

  it("a silent client after 'S' (no TLS handshake) is closed at the startup timeout", async () => {
    const conn = await RawConnection.open(quick.port);
    conn.send(sslRequest());
    expect(await conn.byte()).toBe("S".charCodeAt(0));
    expect((await conn.rest(STARTUP_TIMEOUT_MS + 5_000)).length).toBe(0);
  });

  it("a truncated direct-TLS ClientHello followed by a close is closed at once", async () => {
    // Uses the proxy with the 10 s timeout: the close must be noticed, not timed out.
    const conn = await RawConnection.open(proxy.port);
    conn.send(Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03]));
    conn.socket.end();
    const started = performance.now();
    await conn.rest(3_000);
    await untilIdle(proxy.proxy, 3_000);
    expect(performance.now() - started).toBeLessThan(3_000);
  });

  it("a slow drip of a valid startup, one byte at a time within the timeout, logs in", async () => {
    const conn = await RawConnection.open(proxy.port);
    const whole = startupMessage(LOGIN);
    for (const byte of whole) {
      conn.send(Buffer.from([byte]));
      // A drip needs time between bytes: that is the point of the test.
      await new Promise((resolve) => setTimeout(resolve, 2));
    }
    const frames = await conn.framesUntil("Z");
    expect(frames[0]!.type).toBe("R");
    expect(frames[0]!.body.readUInt32BE(0)).toBe(0);
    await conn.terminate();
  });
});

describe("clients that vanish", () => {
  async function tlsClient(port: number): Promise<RawConnection> {
    const plain = await RawConnection.open(port);
    plain.send(sslRequest());
    expect(await plain.byte()).toBe("S".charCodeAt(0));
    return plain.startTls({ ca: world.localCa.certPem, servername: "localhost" });
  }

  it("a TLS client that resets right after a CancelRequest", async () => {
    const conn = await tlsClient(proxy.port);
    conn.send(cancelRequest(12345, Buffer.from([9, 9, 9, 9])));
    await conn.reset();
    await untilIdle(proxy.proxy);
  });

  // The dial is held until the client is gone, so the client leaves mid-login every time.
  const transports = {
    plain: (port: number) => RawConnection.open(port),
    "TLS after SSLRequest": (port: number) => tlsClient(port),
    "direct TLS": (port: number) => RawConnection.openDirectTls(port, { ca: world.localCa.certPem, servername: "localhost", ALPNProtocols: ["postgresql"] }),
  };
  const leavings = {
    "resets (RST)": (conn: RawConnection) => conn.reset(),
    "closes (FIN)": async (conn: RawConnection) => {
      conn.socket.end();
      await conn.rest();
    },
  };
  describe.each(Object.keys(transports) as Array<keyof typeof transports>)("a %s client", (transport) => {
    it.each(Object.keys(leavings) as Array<keyof typeof leavings>)("that %s while the proxy is still dialing: noticed at once, not a failed login", async (leaving) => {
      const dialer = new GatedDialer(new DirectDialer("127.0.0.1", world.pg.port));
      const gatedLogger = new RecordingLogger();
      const gated = await world.startProxy({ user: "scram_user", auth: passwordAuth({ env: "PW" }, { PW: "scram-secret" }), dialer, logger: gatedLogger });
      const conn = await transports[transport](gated.port);
      conn.send(startupMessage(LOGIN));
      await dialer.called;
      await leavings[leaving](conn);
      // The connection is gone before the dial could even start: the proxy noticed the client, not a timeout.
      await untilIdle(gated.proxy, 3_000);
      dialer.open(); // the dial now starts with the login's signal already aborted
      await gatedLogger.waitFor("client left during login", {}, 5_000);
      expect(gatedLogger.entries.filter((e) => e.level !== "debug")).toEqual([]);
      expect(gated.proxy.stats()).toMatchObject({ failedLogins: 0, lastError: null });
      await gated.stop();
    });
  });

  it("a plain client that resets during its login: not counted as a failed login", async () => {
    const before = proxy.proxy.stats();
    const conn = await RawConnection.open(proxy.port);
    conn.send(startupMessage(LOGIN));
    await conn.reset();
    await untilIdle(proxy.proxy);
    // Whether the reset came during the dial, the TLS or the auth, or just after: no failure to report.
    const after = proxy.proxy.stats();
    expect(after.failedLogins).toBe(before.failedLogins);
    expect(after.lastError).toBe(before.lastError);
  });
});
