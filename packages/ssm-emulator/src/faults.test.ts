import { once } from "node:events";
import { DescribeInstanceInformationCommand, StartSessionCommand, TerminateSessionCommand } from "@aws-sdk/client-ssm";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { FlagValue, MessageType } from "@rdsd/ssm-protocol";
import { echoServer, readBytes, seededBytes } from "@rdsd/testkit";
import { startEmulator } from "./emulator.js";
import type { Emulator } from "./emulator.js";
import { CloseReasons } from "./faults.js";
import { TestDataChannelClient } from "./testing/data-channel-client.js";
import { connectedClient, RDS_HOST, resumeToken, sdkClient, startSession } from "./testing/helpers.js";

let emulator: Emulator;
let echo: Awaited<ReturnType<typeof echoServer>>;
const clients: TestDataChannelClient[] = [];
const INSTANCE = "i-0e1d2c3b4a5968778";

beforeAll(async () => {
  echo = await echoServer();
  emulator = await startEmulator({ pacing: false, hostMap: [`${RDS_HOST}=127.0.0.1:${echo.port}`] });
});
afterEach(() => {
  for (const c of clients.splice(0)) c.close();
});
afterAll(async () => {
  await emulator.close();
  await echo.close();
});

async function connect(clientOptions: Parameters<typeof connectedClient>[1] = {}) {
  const out = await connectedClient(emulator, clientOptions);
  clients.push(out.client);
  return out;
}

/** Resolves false if nothing arrives on the stream within `ms` (a bounded negative check). */
function nothingArrives(stream: NodeJS.ReadableStream, ms: number): Promise<boolean> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      stream.off("data", onData);
      resolve(true);
    }, ms);
    const onData = () => {
      clearTimeout(timer);
      resolve(false);
    };
    stream.once("data", onData);
  });
}

describe("resume after a dropped websocket", () => {
  it("resumes with a new token and the same ClientId, keeps sequence numbers, loses nothing", async () => {
    const { client, sessionId } = await connect();
    const stream = client.openStream();
    const first = seededBytes(300_000, 1);
    const firstBack = readBytes(stream, first.length);
    stream.write(first);
    expect((await firstBack).equals(first)).toBe(true);

    const wsClosed = once(client, "ws-close");
    expect(emulator.dropWebSocket(sessionId)).toBe(true);
    await wsClosed;
    expect(emulator.session(sessionId)!.state).toBe("Disconnected");
    const seqBefore = client.channel.nextSendSequence;

    // Written while the websocket is down: stays outstanding on the client.
    const second = seededBytes(200_000, 2);
    const secondBack = readBytes(stream, second.length);
    stream.write(second);
    expect(client.channel.outstandingCount).toBeGreaterThan(0);

    const token = await resumeToken(emulator, sessionId);
    expect(token).toBeTruthy();
    await client.resume(token!);
    expect((await secondBack).equals(second)).toBe(true);
    const info = emulator.session(sessionId)!;
    expect([info.state, info.connections]).toEqual(["Connected", 2]);
    expect(client.channel.nextSendSequence).toBeGreaterThan(seqBefore);
    // No second handshake.
    expect(client.log.filter((m) => m.payloadType === 5).length).toBe(1);
  });

  it("refuses a resume from another ClientId and the superseded token", async () => {
    const { client, sessionId } = await connect();
    const session = emulator.session(sessionId)!;
    emulator.dropWebSocket(sessionId);
    const token = (await resumeToken(emulator, sessionId))!;
    const url = `ws://127.0.0.1:${emulator.port}/v1/data-channel/${sessionId}?role=publish_subscribe`;
    const stranger = await TestDataChannelClient.connect({ streamUrl: url, token });
    clients.push(stranger);
    expect(await once(stranger, "ws-close")).toEqual([1008]);
    const newer = (await resumeToken(emulator, sessionId))!;
    expect(newer).not.toBe(token);
    const stale = await TestDataChannelClient.connect({ streamUrl: url, token, clientId: client.clientId });
    clients.push(stale);
    expect(await once(stale, "ws-close")).toEqual([1008]);
    expect(session.state).toBe("Connected");
  });
});

describe("the session ends", () => {
  for (const reason of ["idle-timeout", "max-duration", "terminated"] as const) {
    it(`with channel_closed for ${reason}`, async () => {
      const { client, sessionId } = await connect();
      const closed = once(client, "channel-closed");
      const wsClosed = once(client, "ws-close");
      emulator.closeSession(sessionId, reason);
      const [payload] = await closed;
      expect(payload).toMatchObject({ SessionId: sessionId, Output: CloseReasons[reason], MessageType: "channel_closed" });
      expect(await wsClosed).toEqual([1000]);
      expect(emulator.session(sessionId)!.state).toBe("Terminated");
      expect(await resumeToken(emulator, sessionId)).toBeUndefined();
    });
  }

  it("by TerminateSession, with channel_closed and the destination connections closed", async () => {
    const { client, sessionId } = await connect();
    const stream = client.openStream();
    stream.write("hi");
    await readBytes(stream, 2);
    const destination = echo.connections.at(-1)!;
    const destClosed = once(destination, "close");
    const closed = once(client, "channel-closed");
    await sdkClient(emulator).send(new TerminateSessionCommand({ SessionId: sessionId }));
    expect((await closed)[0].Output).toBe("");
    await destClosed;
    expect(emulator.sessions({ active: true }).some((s) => s.sessionId === sessionId)).toBe(false);
  });

  it("when the client sends the TerminateSession flag", async () => {
    const { client, sessionId } = await connect();
    const closed = once(client, "ws-close");
    client.sendFlag(FlagValue.TerminateSession);
    await closed;
    expect(emulator.session(sessionId)!.endReason).toMatch(/TerminateSession/);
  });
});

describe("faults", () => {
  it("stop acknowledging: data still flows but the client's messages stay outstanding", async () => {
    const { client, sessionId } = await connect();
    const stream = client.openStream();
    stream.write("x");
    await readBytes(stream, 1);
    emulator.setFaults({ sessionId }, { stopAcknowledging: true });
    let acks = 0;
    client.on("message", (m) => m.messageType === MessageType.Acknowledge && acks++);
    const back = readBytes(stream, 5);
    stream.write("hello");
    expect((await back).toString()).toBe("hello");
    expect(acks).toBe(0);
    expect(client.channel.outstandingCount).toBeGreaterThan(0);
    emulator.setFaults({ sessionId }, null);
    // The client's next retransmission is acknowledged.
    await new Promise<void>((resolve) => client.on("message", () => client.channel.outstandingCount === 0 && resolve()));
    expect(acks).toBeGreaterThan(0);
  });

  it("black hole: nothing is carried and nothing acknowledged until it lifts", async () => {
    const { client, sessionId } = await connect();
    const stream = client.openStream();
    stream.write("x");
    await readBytes(stream, 1);
    emulator.setFaults({ sessionId }, { blackHole: true });
    let messages = 0;
    client.on("message", () => messages++);
    stream.write("lost?");
    expect(await nothingArrives(stream, 600)).toBe(true);
    expect(messages).toBe(0);
    expect(emulator.session(sessionId)!.state).toBe("Connected");
    const back = readBytes(stream, 5);
    emulator.setFaults({ sessionId }, { blackHole: false });
    expect((await back).toString()).toBe("lost?");
  });

  it("destination unreachable (per instance): ConnectToPortError", async () => {
    emulator.setFaults({ instanceId: INSTANCE }, { destinationUnreachable: true });
    try {
      const { client } = await connect();
      const flag = once(client, "flag");
      const stream = client.openStream();
      stream.on("error", () => {});
      stream.resume();
      expect(await flag).toEqual([FlagValue.ConnectToPortError]);
    } finally {
      emulator.setFaults({ instanceId: INSTANCE }, null);
    }
  });

  it("added latency delays each direction", async () => {
    const { client, sessionId } = await connect();
    const stream = client.openStream();
    stream.write("warm");
    await readBytes(stream, 4);
    emulator.setFaults({ sessionId }, { latencyMs: 150 });
    const started = performance.now();
    const back = readBytes(stream, 4);
    stream.write("ping");
    await back;
    expect(performance.now() - started).toBeGreaterThanOrEqual(290);
    expect(emulator.session(sessionId)!.faults).toEqual({ latencyMs: 150 });
  });

  it("an instance goes offline and comes back", async () => {
    const { client } = await connect();
    const stream = client.openStream();
    stream.write("x");
    await readBytes(stream, 1);
    const ssm = sdkClient(emulator);
    emulator.setInstanceOnline(INSTANCE, false);
    try {
      const err = await ssm
        .send(new StartSessionCommand({ Target: INSTANCE, DocumentName: "AWS-StartPortForwardingSessionToRemoteHost", Parameters: { host: [RDS_HOST] } }))
        .catch((e: Error) => e);
      expect((err as Error).name).toBe("TargetNotConnected");
      const described = await ssm.send(new DescribeInstanceInformationCommand({ Filters: [{ Key: "InstanceIds", Values: [INSTANCE] }] }));
      expect(described.InstanceInformationList![0]!.PingStatus).toBe("ConnectionLost");
      stream.write("held");
      expect(await nothingArrives(stream, 400)).toBe(true);
    } finally {
      emulator.setInstanceOnline(INSTANCE, true);
    }
    expect((await readBytes(stream, 4)).toString()).toBe("held");
    await startSession(emulator);
  });
});

describe("admin HTTP API", () => {
  it("drives faults and lists sessions for other processes", async () => {
    const { client, sessionId } = await connect();
    const admin = (method: string, path: string, body?: unknown) =>
      fetch(`${emulator.endpoint}/_admin${path}`, { method, body: body === undefined ? undefined : JSON.stringify(body) });
    const listed = (await (await admin("GET", "/sessions?active=true")).json()) as { sessionId: string }[];
    expect(listed.some((s) => s.sessionId === sessionId)).toBe(true);
    const faulted = await admin("POST", `/sessions/${sessionId}/faults`, { latencyMs: 5 });
    expect(((await faulted.json()) as { faults: unknown }).faults).toEqual({ latencyMs: 5 });
    expect((await admin("POST", `/sessions/${sessionId}/faults`, { explode: true })).status).toBe(400);
    const wsClosed = once(client, "ws-close");
    expect(await (await admin("POST", `/sessions/${sessionId}/drop-websocket`)).json()).toEqual({ dropped: true });
    await wsClosed;
    const closed = (await (await admin("POST", `/sessions/${sessionId}/close`, { reason: "idle-timeout" })).json()) as { state: string };
    expect(closed.state).toBe("Terminated");
    expect((await admin("POST", "/sessions/nope/close")).status).toBe(404);
    const offline = (await (await admin("POST", `/instances/${INSTANCE}/offline`)).json()) as { pingStatus: string };
    expect(offline.pingStatus).toBe("ConnectionLost");
    const online = (await (await admin("POST", `/instances/${INSTANCE}/online`)).json()) as { pingStatus: string };
    expect(online.pingStatus).toBe("Online");
    expect((await admin("POST", "/map", { from: "db.example.internal", to: "10.0.0.5:5432" })).status).toBe(400);
    expect((await admin("POST", "/map", { from: "db2.abc.eu-west-2.rds.amazonaws.com", to: `127.0.0.1:${echo.port}` })).status).toBe(200);
  });
});

describe("slow answers: StartSession and the data channel's upgrade (delay faults)", () => {
  let slow: Emulator;
  const lines: string[] = [];
  const waiters: { match: string; resolve: () => void }[] = [];
  /** Resolves at the emulator's next log line containing `match`. */
  const logged = (match: string) => new Promise<void>((resolve) => waiters.push({ match, resolve }));
  const heldLines = () => lines.filter((l) => l.includes("held for")).length;

  beforeAll(async () => {
    slow = await startEmulator({
      pacing: false,
      hostMap: [`${RDS_HOST}=127.0.0.1:${echo.port}`],
      log: (line) => {
        lines.push(line);
        for (const w of waiters) if (line.includes(w.match)) w.resolve();
      },
    });
  });
  afterAll(() => slow.close());

  it("StartSession held: a caller that gives up gets no session; a shorter hold answers after it; cleared, at once", async () => {
    const ssm = sdkClient(slow);
    const request = (signal?: AbortSignal) =>
      ssm.send(new StartSessionCommand({ Target: INSTANCE, DocumentName: "AWS-StartPortForwardingSessionToRemoteHost", Parameters: { host: [RDS_HOST] } }), { abortSignal: signal });
    try {
      expect(() => slow.setFaults({ sessionId: "any" }, { startSessionDelayMs: 5 })).toThrow("startSessionDelayMs applies to instances only");
      slow.setFaults({ instanceId: INSTANCE }, { startSessionDelayMs: 60_000 });
      expect(slow.instances()[0]!.faults).toEqual({ startSessionDelayMs: 60_000 });

      const held = logged("held for 60000 ms");
      const gaveUp = logged("the caller gave up");
      const giveUp = new AbortController();
      const abandoned = request(giveUp.signal).catch((e: Error) => e);
      await held;
      giveUp.abort();
      expect((await abandoned) as Error).toBeInstanceOf(Error);
      await gaveUp;
      expect(slow.sessions()).toEqual([]);

      // Held, then answered: the answer comes only after the emulator logged the hold.
      slow.setFaults({ instanceId: INSTANCE }, { startSessionDelayMs: 50 });
      let heldFirst = false;
      void logged("held for 50 ms").then(() => (heldFirst = true));
      const answered = await request();
      expect(heldFirst).toBe(true);
      expect(slow.session(answered.SessionId!)!.instanceId).toBe(INSTANCE);

      slow.setFaults({ instanceId: INSTANCE }, null);
      const before = heldLines();
      expect((await request()).SessionId).toBeTruthy();
      expect(heldLines()).toBe(before);
    } finally {
      ssm.destroy();
    }
  });

  it("the data channel's upgrade held: the websocket does not open until the hold ends; cleared, it opens at once", async () => {
    const stuck = await startSession(slow);
    slow.setFaults({ sessionId: stuck.sessionId }, { channelAcceptDelayMs: 60_000 });
    const held = logged(`data channel for ${stuck.sessionId}: upgrade held for 60000 ms`);
    const ws = new WebSocket(stuck.streamUrl);
    ws.on("error", () => {});
    let opened = false;
    ws.once("open", () => (opened = true));
    const closed = new Promise((resolve) => ws.once("close", resolve));
    await held;
    ws.terminate();
    await closed;
    expect(opened).toBe(false);
    expect(slow.session(stuck.sessionId)!.connections).toBe(0);

    // A short hold (instance-wide): the client connects once it is over and the session works.
    slow.setFaults({ instanceId: INSTANCE }, { channelAcceptDelayMs: 50 });
    const late = await startSession(slow);
    let heldFirst = false;
    void logged(`data channel for ${late.sessionId}: upgrade held for 50 ms`).then(() => (heldFirst = true));
    const client = await TestDataChannelClient.connect({ streamUrl: late.streamUrl, token: late.token });
    clients.push(client);
    expect(heldFirst).toBe(true);
    await client.handshakeComplete;

    slow.setFaults({ instanceId: INSTANCE }, null);
    const before = heldLines();
    const prompt = await startSession(slow);
    const direct = await TestDataChannelClient.connect({ streamUrl: prompt.streamUrl, token: prompt.token });
    clients.push(direct);
    await direct.handshakeComplete;
    expect(heldLines()).toBe(before);
  });
});
