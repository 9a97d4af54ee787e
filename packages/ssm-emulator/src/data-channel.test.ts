import { randomBytes } from "node:crypto";
import { once } from "node:events";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { WebSocket } from "ws";
import {
  decodeHandshakeComplete,
  decodeHandshakeRequest,
  encodeClientMessage,
  encodeSmuxFrame,
  FlagValue,
  MessageType,
  PayloadType,
  randomUuid,
  SmuxCommand,
} from "@rdsd/ssm-protocol";
import type { ClientMessage } from "@rdsd/ssm-protocol";
import { echoServer, readBytes, seededBytes } from "@rdsd/testkit";
import { startEmulator } from "./emulator.js";
import type { Emulator } from "./emulator.js";
import { TestDataChannelClient } from "./testing/data-channel-client.js";
import { closedPort, collectOutput, connectedClient, RDS_HOST, startSession } from "./testing/helpers.js";

let emulator: Emulator;
let echo: Awaited<ReturnType<typeof echoServer>>;
const clients: TestDataChannelClient[] = [];

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

async function connect(...args: Parameters<typeof connectedClient> extends [unknown, ...infer R] ? R : never) {
  const out = await connectedClient(emulator, ...args);
  clients.push(out.client);
  return out;
}

describe("data channel: handshake", () => {
  it("sends HandshakeRequest (seq 0, flags 1), acknowledges the response, then HandshakeComplete (seq 1)", async () => {
    const session = await startSession(emulator);
    const messages: ClientMessage[] = [];
    const client = await TestDataChannelClient.connect({ streamUrl: session.streamUrl, token: session.token });
    clients.push(client);
    client.on("message", (m) => messages.push({ ...m, payload: Buffer.from(m.payload) }));
    await client.handshakeComplete;
    const request = messages[0]!;
    expect([request.messageType, request.sequenceNumber, request.flags, request.payloadType]).toEqual([
      MessageType.OutputStreamData,
      0,
      1,
      PayloadType.HandshakeRequest,
    ]);
    const payload = decodeHandshakeRequest(request.payload);
    expect(payload.AgentVersion).toBe("3.3.1802.0");
    expect(payload.RequestedClientActions).toEqual([
      {
        ActionType: "SessionType",
        ActionParameters: {
          SessionType: "Port",
          Properties: { portNumber: "5432", type: "LocalPortForwarding", host: RDS_HOST, localPortNumber: "0" },
        },
      },
    ]);
    // The acknowledgement of our HandshakeResponse arrives before HandshakeComplete.
    const ackIndex = messages.findIndex((m) => m.messageType === MessageType.Acknowledge);
    const completeIndex = messages.findIndex((m) => m.payloadType === PayloadType.HandshakeComplete);
    expect(ackIndex).toBeGreaterThan(0);
    expect(completeIndex).toBeGreaterThan(ackIndex);
    const complete = messages[completeIndex]!;
    expect([complete.sequenceNumber, complete.flags]).toEqual([1, 0]);
    expect(decodeHandshakeComplete(complete.payload).HandshakeTimeToComplete).toBeGreaterThan(0);
    const info = emulator.session(session.sessionId)!;
    expect([info.state, info.mode, info.clientVersion]).toEqual(["Connected", "multiplexed", "1.2.764.0"]);
  });

  it("refuses a wrong token and a binary first frame", async () => {
    const session = await startSession(emulator);
    const wrong = await TestDataChannelClient.connect({ streamUrl: session.streamUrl, token: "not-the-token" });
    clients.push(wrong);
    const [code] = await once(wrong, "ws-close");
    expect(code).toBe(1008);
    const raw = new WebSocket(session.streamUrl);
    await once(raw, "open");
    raw.send(Buffer.from("binary"));
    const [rawCode] = await once(raw, "close");
    expect(rawCode).toBe(1008);
    expect(emulator.session(session.sessionId)!.state).toBe("Pending");
  });

  it("gives up on a session whose handshake does not complete in time", async () => {
    const quick = await startEmulator({ handshakeTimeoutMs: 150 });
    try {
      const session = await startSession(quick);
      const ended = await quick.waitForSession((s) => s.sessionId === session.sessionId && s.state === "Terminated", 5000);
      expect(ended.endReason).toMatch(/handshake/);
    } finally {
      await quick.close();
    }
  });
});

describe("data channel: multiplexed mode", () => {
  it("carries several MB both ways over parallel smux streams", async () => {
    const { client, sessionId } = await connect();
    expect(client.multiplexed).toBe(true);
    const streams = [client.openStream(), client.openStream(), client.openStream()];
    expect(streams.map((s) => s.id)).toEqual([3, 5, 7]);
    const size = 2 << 20;
    const results = await Promise.all(
      streams.map(async (stream, i) => {
        const data = seededBytes(size, i + 1);
        const back = readBytes(stream, size);
        stream.write(data);
        return (await back).equals(data);
      }),
    );
    expect(results).toEqual([true, true, true]);
    const info = emulator.session(sessionId)!;
    expect(info.bytesFromClient).toBeGreaterThan(3 * size);
    expect(info.bytesToClient).toBeGreaterThan(3 * size);
    expect(info.openDestinationConnections).toBe(3);
    streams[0]!.destroy();
    await emulator.waitForSession((s) => s.sessionId === sessionId && s.openDestinationConnections === 2);
  });

  it("reports ConnectToPortError when the destination refuses, and the session carries on", async () => {
    const { client, sessionId } = await connect({}, { host: "127.0.0.1", port: String(await closedPort()) });
    const flag = once(client, "flag");
    const stream = client.openStream();
    stream.on("error", () => {});
    const closed = once(stream.resume(), "close");
    expect(await flag).toEqual([FlagValue.ConnectToPortError]);
    await closed; // the agent closes the stream (FIN)
    expect(emulator.session(sessionId)!.state).toBe("Connected");
  });

  it("keeps its smux keep-alive on for clients up to 1.2.331.0, as the real agent does", async () => {
    const oldClient = await connect({ clientVersion: "1.2.0.0" });
    const newClient = await connect({ clientVersion: "1.2.764.0" });
    expect(emulator.session(oldClient.sessionId)!.smuxKeepAlive).toBe(true);
    expect(emulator.session(newClient.sessionId)!.smuxKeepAlive).toBe(false);
  });

  it("uses single-connection mode for an old agent version", async () => {
    const old = await startEmulator({ pacing: false, agentVersion: "3.0.196.0", hostMap: [`${RDS_HOST}=127.0.0.1:${echo.port}`] });
    try {
      const { client, sessionId } = await connectedClient(old);
      clients.push(client);
      expect(client.multiplexed).toBe(false);
      expect(old.session(sessionId)!.mode).toBe("single");
    } finally {
      await old.close();
    }
  });
});

describe("data channel: single-connection mode", () => {
  it("is chosen for a client older than 1.1.70, carries raw bytes, and redials after DisconnectToPort", async () => {
    const before = echo.connections.length;
    const { client, sessionId } = await connect({ clientVersion: "1.1.61.0" });
    expect(emulator.session(sessionId)!.mode).toBe("single");
    const data = seededBytes(1 << 20, 9);
    const back = collectOutput(client, data.length);
    client.sendOutput(data);
    expect((await back).equals(data)).toBe(true);
    expect(echo.connections.length).toBe(before + 1);
    const firstConn = echo.connections[before]!;
    const closed = once(firstConn, "close");
    client.sendFlag(FlagValue.DisconnectToPort);
    await closed;
    const again = collectOutput(client, 5);
    client.sendOutput(Buffer.from("again"));
    expect((await again).toString()).toBe("again");
    expect(echo.connections.length).toBe(before + 2);
  });
});

describe("data channel: sequencing and acknowledgement", () => {
  function rawInput(seq: number, payloadType: number, payload: Buffer): Buffer {
    return encodeClientMessage({
      messageType: MessageType.InputStreamData,
      createdDate: Date.now(),
      sequenceNumber: seq,
      flags: 0,
      messageId: randomUuid(),
      payloadType,
      payload,
    });
  }

  it("buffers early messages and delivers them in order", async () => {
    const { client } = await connect({ clientVersion: "1.1.61.0" });
    const next = client.channel.nextSendSequence;
    const back = collectOutput(client, 6);
    client.sendRaw(rawInput(next + 2, PayloadType.Output, Buffer.from("cc")));
    client.sendRaw(rawInput(next + 1, PayloadType.Output, Buffer.from("bb")));
    client.sendRaw(rawInput(next, PayloadType.Output, Buffer.from("aa")));
    expect((await back).toString()).toBe("aabbcc");
  });

  it("drops a message with a bad digest unacknowledged and takes the good resend", async () => {
    const { client, sessionId } = await connect({ clientVersion: "1.1.61.0" });
    const seq = client.channel.nextSendSequence;
    const bad = rawInput(seq, PayloadType.Output, Buffer.from("data"));
    bad[bad.length - 1] = bad[bad.length - 1]! ^ 1;
    const acks: number[] = [];
    client.on("message", (m) => m.messageType === MessageType.Acknowledge && acks.push(m.sequenceNumber));
    client.sendRaw(bad);
    await emulator.waitForSession((s) => s.sessionId === sessionId && s.badMessages === 1);
    const back = collectOutput(client, 4);
    client.sendRaw(rawInput(seq, PayloadType.Output, Buffer.from("data")));
    expect((await back).toString()).toBe("data");
    client.sendRaw(Buffer.from("garbage that is not a message"));
    await emulator.waitForSession((s) => s.sessionId === sessionId && s.badMessages === 2);
  });

  it("survives hostile frames and keeps serving the session", async () => {
    const { client, sessionId } = await connect();
    for (let i = 0; i < 300; i++) {
      const junk = randomBytes(1 + (i % 200) * 3);
      if (i % 3 === 0 && junk.length >= 4) junk.writeUInt32BE(116, 0);
      client.sendRaw(junk);
    }
    client.ws!.send("a text frame after the handshake");
    const stream = client.openStream();
    const back = readBytes(stream, 5);
    stream.write("still");
    expect((await back).toString()).toBe("still");
    const info = emulator.session(sessionId)!;
    expect(info.badMessages).toBe(300);
    expect(info.state).toBe("Connected");
  });

  it("re-acknowledges duplicates without delivering them twice", async () => {
    const { client } = await connect({ clientVersion: "1.1.61.0" });
    const seq = client.channel.nextSendSequence;
    const msg = rawInput(seq, PayloadType.Output, Buffer.from("once"));
    const acked: number[] = [];
    client.on("message", (m) => {
      if (m.messageType === MessageType.Acknowledge) acked.push(JSON.parse(m.payload.toString()).AcknowledgedMessageSequenceNumber);
    });
    const outputs: string[] = [];
    client.on("output", (b) => outputs.push(b.toString()));
    client.sendRaw(msg);
    client.sendRaw(msg);
    const marker = collectOutput(client, 4 + 3);
    client.sendRaw(rawInput(seq + 1, PayloadType.Output, Buffer.from("end")));
    await marker;
    expect(outputs.join("")).toBe("onceend");
    expect(acked.filter((s) => s === seq).length).toBe(2);
  });

  // The real agent acknowledges every input_stream_data message on receipt, before its multiplexer looks at the
  // payload: a smux NOP alone in a message is acknowledged like data, and reaches no destination.
  it("acknowledges a message carrying only a smux NOP frame, and dials nothing for it", async () => {
    const { client, sessionId } = await connect();
    expect(client.multiplexed).toBe(true);
    const dialsBefore = echo.connections.length;
    const seq = client.channel.nextSendSequence;
    const acked = new Promise<number>((resolve) => {
      client.on("message", (m) => {
        if (m.messageType !== MessageType.Acknowledge) return;
        const n = (JSON.parse(m.payload.toString()) as { AcknowledgedMessageSequenceNumber: number }).AcknowledgedMessageSequenceNumber;
        if (n === seq) resolve(n);
      });
    });
    // Through the client's own sequencing (so it sees the acknowledgement), as one message of 8 bytes.
    client.sendRaw(client.channel.send(PayloadType.Output, encodeSmuxFrame(SmuxCommand.Nop, 0), Date.now()));
    expect(await acked).toBe(seq);
    expect(client.channel.outstandingCount).toBe(0);
    // A stream after the NOP still works, and only it dialed.
    const stream = client.openStream();
    const back = readBytes(stream, 4);
    stream.write("next");
    expect((await back).toString()).toBe("next");
    expect(echo.connections.length).toBe(dialsBefore + 1);
    expect(emulator.session(sessionId)!.badMessages).toBe(0);
  });

  it("retransmits what the client does not acknowledge", async () => {
    const { client } = await connect({ clientVersion: "1.1.61.0" });
    client.acknowledge = false;
    const start = Date.now();
    const resent = new Promise<{ seq: number; at: number }[]>((resolve) => {
      const seen: { seq: number; at: number }[] = [];
      client.on("message", (m) => {
        if (m.messageType !== MessageType.OutputStreamData) return;
        seen.push({ seq: m.sequenceNumber, at: Date.now() });
        if (seen.length === 2) resolve(seen);
      });
    });
    client.sendOutput(Buffer.from("ping"));
    const [first, second] = await resent;
    expect(second!.seq).toBe(first!.seq); // the same message again
    expect(second!.at - start).toBeGreaterThanOrEqual(200); // not before the initial 200 ms timeout
    client.acknowledge = true;
  });
});
