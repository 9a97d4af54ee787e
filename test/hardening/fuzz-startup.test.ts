import net from "node:net";
import tls from "node:tls";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildSslRequest, buildStartupMessage, CANCEL_REQUEST_CODE, GSSENC_REQUEST_CODE, textParameter } from "@rdsd/pg-wire";
import { freePort, seededRandom } from "@rdsd/testkit";
import { backendMessages, daemonLogs, DB_PASSWORD, eventually, findSecrets, heavyPhase, processFootprint, startDaemon, startWorld, status, targetYaml, writeConfig, type DaemonProcess, type World } from "./harness.js";

// Mutation fuzzing of the client-facing startup phase of a real daemon process, for a bounded time: valid
// StartupMessage / SSLRequest / CancelRequest / GSSENCRequest / TLS ClientHello packets with bits flipped,
// cut short, length fields at and past the limits, junk after an SSLRequest, TLS garbage after 'S', slow
// drips, many connections at once. Throughout: the daemon never exits, every listener keeps accepting, a
// good client is served after each batch, whatever the daemon answers in plain text is a well-formed
// sequence of backend messages, and its file descriptors return to where they were.

const FUZZ_MS = Number(process.env["RDSD_FUZZ_MS"] ?? 20_000);
const BATCH_MS = 2_500;
const CONCURRENCY = 40;
/** A fuzz connection gives up (destroys its socket) after this long: slow drips and silent waits included. */
const CONNECTION_MS = 900;
const SEED = Number(process.env["RDSD_FUZZ_SEED"] ?? Date.now() % 1_000_000);

let world: World;
let daemon: DaemonProcess | undefined;
const ports: number[] = [];
let clientHello: Buffer;
const answers: string[] = [];

beforeAll(async () => {
  world = await startWorld();
  ports.push(await freePort(), await freePort());
  // A bare port listens on 127.0.0.1 and ::1: two listeners per target.
  const target = (name: string, port: number) => targetYaml(name, port, [], "direct", world.pg.port).replace(`listen: "127.0.0.1:${port}"`, `listen: ${port}`);
  await writeConfig(world, target("a", ports[0]!) + target("b", ports[1]!));
  daemon = await startDaemon(world);
  clientHello = await captureClientHello();
}, 60_000);

afterAll(async () => {
  await daemon?.kill();
  await world?.close();
});

/** The first flight of a real Node TLS client (a ClientHello with SNI and ALPN), as a seed to mutate. */
async function captureClientHello(): Promise<Buffer> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const got = new Promise<Buffer>((resolve) => server.once("connection", (s) => s.once("data", (d: Buffer) => (resolve(d), s.destroy()))));
  const client = tls.connect({ host: "127.0.0.1", port: (server.address() as net.AddressInfo).port, servername: "localhost", ALPNProtocols: ["postgresql"] });
  client.on("error", () => {});
  const hello = await got;
  client.destroy();
  server.close();
  return hello;
}

type Random = () => number;
const pick = <T>(r: Random, items: readonly T[]): T => items[Math.floor(r() * items.length)]!;
const int = (r: Random, below: number): number => Math.floor(r() * below);
const bytes = (r: Random, n: number): Buffer => Buffer.from(Array.from({ length: n }, () => int(r, 256)));

function u32(code: number, extra: Buffer = Buffer.alloc(0)): Buffer {
  const out = Buffer.alloc(8 + extra.length);
  out.writeUInt32BE(out.length, 0);
  out.writeUInt32BE(code >>> 0, 4);
  extra.copy(out, 8);
  return out;
}

const LENGTHS = [0, 1, 4, 7, 8, 9, 10_000, 10_001, 0x7fffffff, 0x80000000, 0xffffffff];

function seeds(r: Random): Buffer[] {
  const key = bytes(r, pick(r, [4, 4, 0, 3, 256, 257]));
  return [
    buildStartupMessage(3, 0, [textParameter("user", "me"), textParameter("database", "postgres"), textParameter("application_name", "fuzz")]),
    buildStartupMessage(3, 2, [textParameter("user", "me"), textParameter("_pq_.x", "y")]),
    buildStartupMessage(pick(r, [2, 4, 1234]), int(r, 65536), [textParameter("user", "me")]),
    buildSslRequest(),
    u32(GSSENC_REQUEST_CODE),
    u32(CANCEL_REQUEST_CODE, Buffer.concat([bytes(r, 4), key])),
  ];
}

/** One mutation of a packet. */
function mutate(r: Random, packet: Buffer): Buffer {
  const out = Buffer.from(packet);
  switch (int(r, 7)) {
    case 0: // bit flips
      for (let i = 1 + int(r, 8); i > 0 && out.length > 0; i--) out[int(r, out.length)]! ^= 1 << int(r, 8);
      return out;
    case 1: // cut short
      return out.subarray(0, int(r, out.length));
    case 2: // length field at and past the limits
      if (out.length >= 4) out.writeUInt32BE(pick(r, LENGTHS), 0);
      return out;
    case 3: // length field off by a little
      if (out.length >= 4) out.writeUInt32BE(Math.min(0xffffffff, Math.max(0, out.readUInt32BE(0) + int(r, 17) - 8)), 0);
      return out;
    case 4: // junk after the packet (a pipelined client, or garbage)
      return Buffer.concat([out, bytes(r, 1 + int(r, 300))]);
    case 5: // the request code replaced
      if (out.length >= 8) out.writeUInt32BE(pick(r, [0, 196608, 196609, 131072, 80877101, 80877105, 0xffffffff, int(r, 2 ** 32)]), 4);
      return out;
    default: // terminators removed or doubled
      return Buffer.from(out.toString("latin1").replace(/\0/g, () => pick(r, ["", "\0\0", "\0", "x"])), "latin1");
  }
}

interface Case {
  kind: string;
  /** Bytes to send at once, then (after the daemon's first answer byte, when `afterAnswer`) more. */
  first: Buffer;
  afterAnswer?: Buffer;
  /** Sent one byte at a time, this many ms apart. */
  dripMs?: number;
}

function makeCase(r: Random): Case {
  const roll = r();
  if (roll < 0.45) {
    let packet = pick(r, seeds(r));
    for (let n = 1 + int(r, 3); n > 0; n--) packet = mutate(r, packet);
    return { kind: "mutated packet", first: packet };
  }
  if (roll < 0.55) return { kind: "SSLRequest then junk", first: Buffer.concat([buildSslRequest(), bytes(r, 1 + int(r, 200))]) };
  if (roll < 0.68) {
    const garbage = r() < 0.5 ? bytes(r, 1 + int(r, 400)) : mutate(r, mutate(r, clientHello));
    return { kind: "TLS garbage after 'S'", first: buildSslRequest(), afterAnswer: garbage };
  }
  if (roll < 0.78) return { kind: "direct TLS garbage", first: r() < 0.3 ? Buffer.concat([Buffer.from([0x16, 0x03, 0x01]), bytes(r, int(r, 300))]) : mutate(r, clientHello) };
  if (roll < 0.86) return { kind: "random bytes", first: bytes(r, int(r, 600)) };
  if (roll < 0.93) {
    const packet = r() < 0.5 ? pick(r, seeds(r)) : mutate(r, pick(r, seeds(r)));
    return { kind: "slow drip", first: packet, dripMs: 20 + int(r, 60) };
  }
  // A startup packet claiming the maximum length (or just past it) and delivering it.
  const length = pick(r, [10_000, 10_001, 65_536]);
  const big = Buffer.alloc(length, "a".charCodeAt(0));
  big.writeUInt32BE(length, 0);
  big.writeUInt32BE(196608, 4);
  return { kind: "oversized startup", first: big };
}

interface Outcome {
  kind: string;
  answer: Buffer;
  closedByDaemon: boolean;
  /** The first byte sent opened a TLS record (direct TLS). */
  sentTls: boolean;
}

/** Runs one fuzz connection to completion (the daemon closes it, or it gives up after CONNECTION_MS). */
function runCase(r: Random, host: string, port: number, fuzz: Case): Promise<Outcome> {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port });
    const chunks: Buffer[] = [];
    let closedByDaemon = false;
    let done = false;
    const timers: NodeJS.Timeout[] = [];
    const finish = () => {
      if (done) return;
      done = true;
      timers.forEach(clearTimeout);
      socket.destroy();
      resolve({ kind: fuzz.kind, answer: Buffer.concat(chunks), closedByDaemon, sentTls: fuzz.first[0] === 0x16 });
    };
    timers.push(setTimeout(finish, CONNECTION_MS));
    socket.on("error", () => {});
    socket.on("end", () => (closedByDaemon = true));
    socket.on("close", () => {
      if (!done) closedByDaemon = true;
      finish();
    });
    let answered = false;
    socket.on("data", (chunk: Buffer) => {
      chunks.push(chunk);
      if (!answered && fuzz.afterAnswer) {
        answered = true;
        socket.write(fuzz.afterAnswer);
      }
    });
    socket.on("connect", () => {
      if (fuzz.dripMs) {
        fuzz.first.forEach((_, i) => timers.push(setTimeout(() => socket.writable && socket.write(fuzz.first.subarray(i, i + 1)), i * fuzz.dripMs!)));
        return;
      }
      // Split at random points: the daemon must not depend on how the bytes arrive.
      let at = 0;
      while (at < fuzz.first.length) {
        const next = Math.min(fuzz.first.length, at + 1 + int(r, fuzz.first.length));
        socket.write(fuzz.first.subarray(at, next));
        at = next;
      }
    });
  });
}

/**
 * What the daemon said in plain text, checked: an optional single 'N'/'S' answer to an SSLRequest or GSSENCRequest
 * (after 'S' it is TLS: not checked), then whole backend messages, any ErrorResponse carrying severity and SQLSTATE.
 */
function answerProblem(outcome: Outcome): string | null {
  let rest = outcome.answer;
  if (rest.length === 0) return null;
  if (outcome.sentTls) return null; // the daemon answers a TLS record in TLS (alerts)
  if (rest[0] === 0x53) return null; // 'S' (no backend message comes first with that type): TLS follows
  if (rest[0] === 0x4e) rest = rest.subarray(1); // 'N'
  if (rest.length === 0) return null;
  try {
    for (const message of backendMessages(rest)) {
      if (message.type === "E") {
        answers.push(`${message.fields!.message} ${message.fields!.hint ?? ""}`);
        if (!message.fields!.severity || !/^[0-9A-Z]{5}$/.test(message.fields!.code ?? "")) return `ErrorResponse without severity/code: ${JSON.stringify(message.fields)}`;
      }
    }
  } catch (err) {
    // A daemon that closed mid-answer is a bug; a connection we gave up on may have been cut anywhere.
    return outcome.closedByDaemon ? (err as Error).message : null;
  }
  return null;
}

async function goodClient(host: string, port: number, ssl: boolean): Promise<void> {
  const client = new pg.Client({ host, port, user: "me", database: "postgres", connectionTimeoutMillis: 10_000, ssl: ssl ? { rejectUnauthorized: false } : false });
  client.on("error", () => {});
  await client.connect();
  expect((await client.query<{ u: string }>("SELECT current_user AS u")).rows[0]!.u).toBe("app");
  await client.end();
}

async function settledFootprint() {
  await eventually("every connection closed", async () => (await status(world)).targets.every((t) => t.connections === 0), 30_000, 200);
  return processFootprint(daemon!);
}

describe("fuzzing the startup phase of a real daemon", () => {
  it(`mutated startup packets, TLS garbage and slow drips for ${FUZZ_MS / 1000} s, ${CONCURRENCY} at a time: the daemon stays up, every listener keeps serving, fds return to baseline`, () => heavyPhase(async () => {
    console.log(`fuzz seed ${SEED} (replay with RDSD_FUZZ_SEED=${SEED})`);
    const r = seededRandom(SEED);
    const listeners = ports.flatMap((port) => ["127.0.0.1", "::1"].map((host) => ({ host, port })));
    for (const { host, port } of listeners) await goodClient(host, port, false);
    const before = await settledFootprint();

    const counts = new Map<string, number>();
    const problems: string[] = [];
    let closedByDaemon = 0;
    let batches = 0;
    const goodMs: number[] = [];
    const started = Date.now();
    while (Date.now() - started < FUZZ_MS) {
      const batchEnd = Date.now() + BATCH_MS;
      await Promise.all(
        Array.from({ length: CONCURRENCY }, async () => {
          while (Date.now() < batchEnd) {
            const fuzz = makeCase(r);
            const { host, port } = pick(r, listeners);
            const outcome = await runCase(r, host, port, fuzz);
            counts.set(fuzz.kind, (counts.get(fuzz.kind) ?? 0) + 1);
            if (outcome.closedByDaemon) closedByDaemon++;
            const problem = answerProblem(outcome);
            if (problem) problems.push(`${fuzz.kind} ${fuzz.first.subarray(0, 64).toString("hex")}: ${problem}`);
          }
        }),
      );
      batches++;
      expect(daemon!.child.exitCode, "the daemon is still running").toBeNull();
      // Every listener still accepts and serves, over plain and TLS.
      const goodStarted = Date.now();
      await Promise.all(listeners.map(({ host, port }, i) => goodClient(host, port, i % 2 === 0)));
      goodMs.push(Date.now() - goodStarted);
    }
    const total = [...counts.values()].reduce((a, b) => a + b, 0);
    await settledFootprint();
    const settling = Date.now();
    // Sockets the fuzz clients already closed may still be on their way out (a startup read, a TLS handshake).
    let after = await processFootprint(daemon!);
    await eventually("the daemon's fds back to the baseline", async () => (after = await processFootprint(daemon!)).fds <= before.fds + 2, 15_000, 100).catch(() => {});
    const settleMs = Date.now() - settling;
    console.log(
      `fuzz: ${total} connections in ${batches} batches over ${Date.now() - started} ms (${[...counts].map(([k, v]) => `${k} ${v}`).join(", ")}); ` +
        `${closedByDaemon} closed by the daemon; good clients after each batch in ${goodMs.join("/")} ms; fds settled ${settleMs} ms after status showed no connections; daemon fds ${before.fds} -> ${after.fds}, RSS ${before.rssKb} -> ${after.rssKb} kB`,
    );
    expect(problems).toEqual([]);
    expect(total).toBeGreaterThan(500);
    expect(after.fds).toBeLessThanOrEqual(before.fds + 2);
    expect(after.rssKb - before.rssKb).toBeLessThan(100 * 1024);
    expect(daemon!.output()).not.toMatch(/\n\s+at .+\(.+:\d+:\d+\)|Uncaught|unhandled/i); // no stack traces
  }), FUZZ_MS + 330_000);

  it("nothing produced (daemon output and log, the daemon's answers) holds the database password", async () => {
    await daemon!.kill();
    daemon = undefined;
    const texts = Object.fromEntries([...world.produced.map((t, i) => [`output ${i}`, t]), ["daemon log", await daemonLogs(world)], ["answers to fuzz clients", answers.join("\n")]]);
    expect(answers.length).toBeGreaterThan(0);
    expect(findSecrets(texts, { "database password": DB_PASSWORD, "AWS secret key": world.emulator.credentials.secretAccessKey })).toEqual([]);
  });
});
