import http from "node:http";
import type { AddressInfo } from "node:net";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { WebSocket, WebSocketServer } from "ws";
import { encodeClientMessage, encodeSmuxFrame, MessageType, PayloadType, randomUuid, SmuxCommand } from "@rdsd/ssm-protocol";
import { freePort, seededRandom } from "@rdsd/testkit";
import { daemonLogs, DB_PASSWORD, eventually, findSecrets, heavyPhase, processFootprint, startDaemon, startWorld, status, targetYaml, writeConfig, type DaemonProcess, type World } from "./harness.js";

// The emulator-facing side of rdsd's native SSM client, fuzzed through a real daemon: a websocket
// man-in-the-middle between the daemon and the emulator's agent rewrites what the agent sends for a bounded
// time (bit flips, so wrong digests; truncation; junk; forged messages of unknown types, absurd payload types,
// huge and negative sequence numbers, acknowledgements of messages never sent, channel_closed, garbage smux
// frames inside well-formed messages; bursts), while clients keep connecting. The daemon must not crash, its
// memory must stay bounded, every client must get an answer (served or an error) in bounded time, and once
// the agent behaves again new clients are served with no restart.

const HOSTILE_MS = Number(process.env["RDSD_FUZZ_AGENT_MS"] ?? 12_000);
const SEED = Number(process.env["RDSD_FUZZ_SEED"] ?? Date.now() % 1_000_000);

let world: World;
let daemon: DaemonProcess | undefined;
let port: number;
let front: Awaited<ReturnType<typeof startFront>>;
const clientErrors: string[] = [];

const r = seededRandom(SEED);
const int = (below: number) => Math.floor(r() * below);
const pick = <T>(items: readonly T[]): T => items[int(items.length)]!;
const junk = (n: number) => Buffer.from(Array.from({ length: n }, () => int(256)));

/** A well-formed agent message (valid digest) with hostile contents. */
function forged(): Buffer {
  // channel_closed ends the session outright: rare, so the other kinds meet live sessions.
  const kind = r() < 0.03 ? 5 : int(5);
  const seq = pick([0, 1, 2, 1000, 2 ** 31, 2 ** 40, Number.MAX_SAFE_INTEGER, -1, -(2 ** 40)]);
  const base = { createdDate: Date.now(), sequenceNumber: seq, flags: pick([0, 1, 2, 3, 0xffff]), messageId: randomUuid() };
  switch (kind) {
    case 0: // garbage smux frames inside output data
      return encodeClientMessage({ ...base, messageType: MessageType.OutputStreamData, payloadType: PayloadType.Output, payload: Buffer.concat([smuxGarbage(), junk(int(64))]) });
    case 1: // acknowledgement of a message never sent
      return encodeClientMessage({
        ...base,
        messageType: MessageType.Acknowledge,
        payloadType: 0,
        payload: Buffer.from(JSON.stringify({ AcknowledgedMessageType: "input_stream_data", AcknowledgedMessageId: randomUuid(), AcknowledgedMessageSequenceNumber: seq, IsSequentialMessage: true })),
      });
    case 2: // unknown message type, absurd payload type
      return encodeClientMessage({ ...base, messageType: pick(["bogus_type", "x", "output_stream_datA", "start_publication", "pause_publication"]), payloadType: pick([0, 13, 99, 0xffffffff]), payload: junk(int(300)) });
    case 3: // handshake/flag payloads out of place, malformed JSON
      return encodeClientMessage({ ...base, messageType: MessageType.OutputStreamData, payloadType: pick([PayloadType.HandshakeRequest, PayloadType.HandshakeComplete, PayloadType.Flag, PayloadType.Error, PayloadType.ExitCode]), payload: pick([junk(20), Buffer.from("{"), Buffer.from("null"), Buffer.from('{"AgentVersion":5}')]) });
    case 4: // a large payload
      return encodeClientMessage({ ...base, messageType: MessageType.OutputStreamData, payloadType: PayloadType.Output, payload: junk(pick([1024, 65_536, 1 << 20])) });
    default: // the agent closing the channel
      return encodeClientMessage({ ...base, messageType: MessageType.ChannelClosed, payloadType: 0, payload: pick([junk(30), Buffer.from(JSON.stringify({ MessageId: randomUuid(), CreatedDate: "x", DestinationId: "", SessionId: "s", MessageType: "channel_closed", SchemaVersion: 1, Output: "fuzz" }))]) });
  }
}

function smuxGarbage(): Buffer {
  const frames: Buffer[] = [];
  for (let i = 1 + int(4); i > 0; i--) {
    const frame = encodeSmuxFrame(pick([SmuxCommand.Syn, SmuxCommand.Fin, SmuxCommand.Psh, SmuxCommand.Nop]), pick([0, 1, 3, int(2 ** 32)]), junk(int(100)));
    if (r() < 0.2) frame[0] = pick([0, 2, 7]); // unknown version
    if (r() < 0.2) frame[1] = pick([4, 9, 255]); // unknown command
    frames.push(frame);
  }
  const out = Buffer.concat(frames);
  // Sometimes a header claiming more data than follows.
  if (out.length >= 8 && r() < 0.3) out.writeUInt16LE(0xffff, 2);
  return out;
}

/** One agent->client message, as the hostile agent passes it on (zero or more messages). */
function tamper(message: Buffer): Buffer[] {
  const roll = r();
  if (roll < 0.25) return [message];
  if (roll < 0.45) {
    const out = Buffer.from(message);
    for (let i = 1 + int(6); i > 0; i--) out[int(out.length)]! ^= 1 << int(8); // wrong digest, bad header, bad length
    return [out];
  }
  if (roll < 0.55) return [message.subarray(0, int(message.length))];
  if (roll < 0.65) return [junk(int(200)), message];
  if (roll < 0.8) return [forged(), message];
  if (roll < 0.9) return Array.from({ length: 20 + int(80) }, () => (r() < 0.5 ? forged() : junk(int(120)))); // a burst, the real one dropped
  return []; // dropped
}

/**
 * An HTTP pass-through to the emulator's SSM endpoint that points every StreamUrl at a websocket
 * man-in-the-middle, which relays to the emulator and tampers with agent->client messages while `hostile`.
 */
async function startFront(emulatorEndpoint: string) {
  const upstream = new URL(emulatorEndpoint);
  const tokens: string[] = [];
  let agentOrigin = "";
  const wss = new WebSocketServer({ host: "127.0.0.1", port: 0 });
  await new Promise((resolve) => wss.once("listening", resolve));
  const wsOrigin = `ws://127.0.0.1:${(wss.address() as AddressInfo).port}`;
  const state = { hostile: false, tampered: 0, relayed: 0, connections: 0 };
  const pairs = new Set<{ client: WebSocket; agent: WebSocket }>();

  wss.on("connection", (client, req) => {
    state.connections++;
    const agent = new WebSocket(`${agentOrigin}${req.url}`);
    const pair = { client, agent };
    pairs.add(pair);
    const pending: Array<[Buffer, boolean]> = [];
    client.on("message", (data: Buffer, isBinary) => (agent.readyState === WebSocket.OPEN ? agent.send(data, { binary: isBinary }) : pending.push([data, isBinary])));
    agent.on("open", () => pending.splice(0).forEach(([d, b]) => agent.send(d, { binary: b })));
    agent.on("message", (data: Buffer, isBinary) => {
      if (client.readyState !== WebSocket.OPEN) return;
      if (!state.hostile || !isBinary) {
        state.relayed++;
        client.send(data, { binary: isBinary });
        return;
      }
      state.tampered++;
      for (const out of tamper(data)) client.send(out, { binary: true });
    });
    const end = () => {
      pairs.delete(pair);
      client.terminate();
      agent.terminate();
    };
    client.on("close", end);
    agent.on("close", end);
    client.on("error", end);
    agent.on("error", end);
  });

  const server = http.createServer((req, res) => {
    const forward = http.request({ host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers: req.headers }, (answer) => {
      const chunks: Buffer[] = [];
      answer.on("data", (c: Buffer) => chunks.push(c));
      answer.on("end", () => {
        let body = Buffer.concat(chunks).toString("utf8");
        const token = /"TokenValue"\s*:\s*"([^"]+)"/.exec(body)?.[1];
        if (token) tokens.push(token);
        body = body.replace(/"StreamUrl"\s*:\s*"(wss?:\/\/[^/"]+)/, (_m, origin: string) => {
          agentOrigin = origin;
          return `"StreamUrl":"${wsOrigin}`;
        });
        const headers = { ...answer.headers, "content-length": String(Buffer.byteLength(body)) };
        res.writeHead(answer.statusCode ?? 502, headers);
        res.end(body);
      });
    });
    forward.on("error", () => res.destroy());
    req.pipe(forward);
  });
  server.keepAliveTimeout = 1_000;
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    endpoint: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    tokens,
    state,
    /** Cuts every relayed websocket (the client resumes or reopens through the front). */
    cutAll() {
      for (const { client, agent } of [...pairs]) {
        client.terminate();
        agent.terminate();
      }
    },
    async close() {
      this.cutAll();
      wss.close();
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

beforeAll(async () => {
  world = await startWorld();
  front = await startFront(world.emulator.endpoint);
  world.env = { ...world.env, AWS_ENDPOINT_URL_SSM: front.endpoint };
  port = await freePort();
  await writeConfig(world, targetYaml("orders", port));
  daemon = await startDaemon(world);
  await eventually("the target ready", async () => (await status(world)).targets[0]!.state === "ready", 20_000);
}, 60_000);

afterAll(async () => {
  await daemon?.kill("SIGKILL");
  await front?.close();
  await world?.close();
});

/** One client: connect, query, end; "ok" or the error it got. Bounded in time by its own timeouts. */
async function oneClient(): Promise<string> {
  const client = new pg.Client({ host: "127.0.0.1", port, user: "me", database: "postgres", connectionTimeoutMillis: 15_000, query_timeout: 10_000 });
  client.on("error", () => {});
  try {
    await client.connect();
    await client.query("SELECT repeat('x', 20000) AS x, 1 AS one");
    return "ok";
  } catch (err) {
    const e = err as Error & { hint?: string };
    const text = `${e.message} ${e.hint ?? ""}`;
    clientErrors.push(text);
    return text;
  } finally {
    await Promise.race([client.end().catch(() => {}), new Promise((resolve) => setTimeout(resolve, 3_000))]);
  }
}

/** Runs `fn`; a failure names the seed that replays it (the log line may be cut from a CI excerpt). */
async function withSeedInFailure(fn: () => Promise<void>): Promise<void> {
  try {
    await fn();
  } catch (err) {
    if (err instanceof Error) err.message = `[replay with RDSD_FUZZ_SEED=${SEED}] ${err.message}`;
    throw err;
  }
}

describe("a hostile agent, through a real daemon's native SSM client", () => {
  it(`tampered agent messages for ${HOSTILE_MS / 1000} s: no crash, bounded memory, every client answered; then new clients are served again`, () => heavyPhase(() => withSeedInFailure(async () => {
    console.log(`agent fuzz seed ${SEED} (replay with RDSD_FUZZ_SEED=${SEED})`);
    expect(await oneClient()).toBe("ok");
    const before = await processFootprint(daemon!);

    front.state.hostile = true;
    const started = Date.now();
    const outcomes: string[] = [];
    let peakRssKb = before.rssKb;
    const clientLoops = Array.from({ length: 4 }, async () => {
      while (Date.now() - started < HOSTILE_MS) {
        const t0 = Date.now();
        const outcome = await oneClient();
        outcomes.push(outcome);
        expect(Date.now() - t0, "a client waited too long for an answer").toBeLessThan(30_000);
      }
    });
    const sampler = (async () => {
      while (Date.now() - started < HOSTILE_MS) {
        peakRssKb = Math.max(peakRssKb, (await processFootprint(daemon!)).rssKb);
        await status(world); // the control socket keeps answering
        await new Promise((resolve) => setTimeout(resolve, 500));
      }
    })();
    await Promise.all([...clientLoops, sampler]);
    const hostileStatus = (await status(world)).targets[0]!;
    expect(daemon!.child.exitCode, "the daemon is still running").toBeNull();

    // The agent behaves again; whatever websockets the hostile period left are cut, as a network blip would.
    front.state.hostile = false;
    front.cutAll();
    const recovering = Date.now();
    await eventually("a new client served again", async () => (await oneClient()) === "ok", 60_000, 500);
    const recoveryMs = Date.now() - recovering;
    await eventually("the target ready", async () => (await status(world)).targets[0]!.state === "ready", 30_000, 200);
    const after = await processFootprint(daemon!);

    const served = outcomes.filter((o) => o === "ok").length;
    const kinds = new Map<string, number>();
    for (const o of outcomes.filter((o) => o !== "ok")) {
      const kind = o.replace(/[0-9a-f-]{36}|\d+(\.\d+)?/g, "#").slice(0, 90);
      kinds.set(kind, (kinds.get(kind) ?? 0) + 1);
    }
    console.log(
      `agent fuzz: ${front.state.tampered} agent messages tampered, ${front.state.connections} websockets; ${outcomes.length} clients during it, ${served} served; ` +
        `status then: ${hostileStatus.state} ${hostileStatus.lastError?.message ?? ""}; served again ${recoveryMs} ms after the agent behaved; ` +
        `daemon RSS ${before.rssKb} -> peak ${peakRssKb} -> ${after.rssKb} kB, fds ${before.fds} -> ${after.fds}\n  errors: ${[...kinds].map(([k, n]) => `${n}x ${k}`).join("\n          ")}`,
    );
    expect(front.state.tampered).toBeGreaterThan(10);
    expect(outcomes.length).toBeGreaterThan(4);
    expect(peakRssKb - before.rssKb).toBeLessThan(200 * 1024);
    expect(daemon!.output()).not.toMatch(/\n\s+at .+\(.+:\d+:\d+\)|Uncaught|unhandled/i);
    await eventually("the daemon's fds back near the baseline", async () => (await processFootprint(daemon!)).fds <= before.fds + 6, 20_000, 200);
  })), HOSTILE_MS + 390_000);

  it("nothing produced holds the database password, the AWS secret key or any session token", async () => {
    await daemon!.kill();
    daemon = undefined;
    expect(front.tokens.length).toBeGreaterThan(1);
    const texts: Record<string, string> = { "daemon log": await daemonLogs(world), "client errors": clientErrors.join("\n") };
    world.produced.forEach((t, i) => (texts[`output ${i}`] = t));
    const secrets: Record<string, string> = { "database password": DB_PASSWORD, "AWS secret key": world.emulator.credentials.secretAccessKey };
    front.tokens.forEach((t, i) => (secrets[`session token ${i}`] = t));
    expect(findSecrets(texts, secrets)).toEqual([]);
  });
});
