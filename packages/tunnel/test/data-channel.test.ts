import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { encodeChannelClosedMessage, encodeFlag, FlagValue, PayloadType, randomUuid } from "@rdsd/ssm-protocol";
import { ManualClock } from "../src/clock.js";
import { CLIENT_VERSION, DataChannel } from "../src/data-channel.js";
import type { DataChannelEnd, DataChannelOptions } from "../src/data-channel.js";
import { seededBytes } from "@rdsd/testkit";
import { AgentConnection, ScriptedAgent } from "./scripted-agent.js";

let agent: ScriptedAgent;
const channels: DataChannel[] = [];

beforeEach(async () => {
  agent = await ScriptedAgent.start();
});
afterEach(async () => {
  for (const c of channels.splice(0)) await c.close();
  await agent.close();
});

function channel(overrides: Partial<DataChannelOptions> = {}): { dc: DataChannel; resumes: number[] } {
  const resumes: number[] = [];
  const dc = new DataChannel({
    session: { sessionId: "s-1", tokenValue: "token-initial-secret", streamUrl: agent.url },
    clientId: randomUuid(),
    resume: async () => {
      resumes.push(Date.now());
      return { sessionId: "s-1", tokenValue: `token-resumed-${resumes.length}`, streamUrl: agent.url };
    },
    ...overrides,
  });
  channels.push(dc);
  return { dc, resumes };
}

async function openChannel(overrides: Partial<DataChannelOptions> = {}, agentVersion?: string) {
  const { dc, resumes } = channel(overrides);
  const conn = agent.nextConnection();
  const opening = dc.open();
  const c = await conn;
  await c.handshake(agentVersion);
  const handshake = await opening;
  return { dc, conn: c, handshake, resumes };
}

function collect(dc: DataChannel): Buffer[] {
  const out: Buffer[] = [];
  dc.on("data", (b) => out.push(Buffer.from(b)));
  return out;
}

describe("data channel handshake", () => {
  it("opens with OpenDataChannel, answers the HandshakeRequest with a realistic version, and settles multiplexing", async () => {
    const { conn, handshake } = await openChannel();
    expect(conn.open).toMatchObject({ MessageSchemaVersion: "1.0", TokenValue: "token-initial-secret", ClientVersion: CLIENT_VERSION });
    const response = conn.received.find((m) => m.payloadType === PayloadType.HandshakeResponse)!;
    expect(response.sequenceNumber).toBe(0);
    expect(JSON.parse(response.payload.toString())).toEqual({
      ClientVersion: CLIENT_VERSION,
      ProcessedClientActions: [{ ActionType: "SessionType", ActionStatus: 1, ActionResult: null, Error: "" }],
      Errors: null,
    });
    // The client acknowledged the agent's HandshakeRequest (0) and HandshakeComplete (1).
    await conn.until(() => conn.acks.includes(0) && conn.acks.includes(1));
    expect(handshake).toEqual({ agentVersion: "3.3.1802.0", multiplexed: true, keepAliveOff: true, terminateFlag: true });
  });

  it("uses single-connection mode and smux keep-alive rules of old agents", async () => {
    const { handshake } = await openChannel({}, "3.0.100.0");
    expect(handshake).toMatchObject({ multiplexed: false, keepAliveOff: false });
  });

  it("gives up when the agent sends no handshake in time", async () => {
    const { dc } = channel({ handshakeTimeoutMs: 300 });
    const conn = agent.nextConnection();
    const started = Date.now();
    const opening = dc.open();
    await (await conn).opening();
    await expect(opening).rejects.toThrow(/did not complete the handshake within 0.3 s/);
    expect(Date.now() - started).toBeLessThan(2_000);
  });
});

describe("data channel sequencing", () => {
  it("delivers messages that arrive out of order in sequence, each acknowledged", async () => {
    const { dc, conn } = await openChannel();
    const data = collect(dc);
    conn.send(AgentConnection.output(4, PayloadType.Output, Buffer.from("D")));
    conn.send(AgentConnection.output(3, PayloadType.Output, Buffer.from("C")));
    conn.send(AgentConnection.output(2, PayloadType.Output, Buffer.from("B")));
    await conn.until(() => [2, 3, 4].every((s) => conn.acks.includes(s)));
    expect(Buffer.concat(data).toString()).toBe("BCD");
  });

  it("delivers a duplicated message once and acknowledges it again", async () => {
    const { dc, conn } = await openChannel();
    const data = collect(dc);
    const message = AgentConnection.output(2, PayloadType.Output, Buffer.from("once"));
    conn.send(message);
    conn.send(message);
    await conn.until(() => conn.acks.filter((s) => s === 2).length === 2);
    conn.send(AgentConnection.output(3, PayloadType.Output, Buffer.from("!")));
    await conn.until(() => conn.acks.includes(3));
    expect(Buffer.concat(data).toString()).toBe("once!");
  });

  it("retransmits a message whose acknowledgement was lost, and stops once it is acknowledged", async () => {
    const { dc, conn } = await openChannel();
    dc.write(Buffer.from("hello"));
    const copies = () => conn.received.filter((m) => m.payloadType === PayloadType.Output && m.payload.toString() === "hello");
    await conn.until(() => copies().length >= 2, 3_000);
    const [first, second] = copies();
    expect(second!.sequenceNumber).toBe(first!.sequenceNumber);
    expect(second!.messageId).toBe(first!.messageId);
    expect(first!.sequenceNumber).toBe(1); // 0 was the HandshakeResponse
    conn.ack(first!);
    await conn.until(() => dc.outstanding === 0);
    const count = copies().length;
    await new Promise((r) => setTimeout(r, 700)); // several retransmission periods: no more copies
    expect(copies().length).toBe(count);
  });

  it("ignores malformed frames and keeps working", async () => {
    const { dc, conn } = await openChannel();
    const data = collect(dc);
    conn.ws.send(Buffer.from("not a client message at all"), { binary: true });
    const bad = AgentConnection.output(2, PayloadType.Output, Buffer.from("x"));
    bad[100] = (bad[100] ?? 0) ^ 0xff; // corrupt the digest
    conn.send(bad);
    conn.send(AgentConnection.output(2, PayloadType.Output, Buffer.from("good")));
    await conn.until(() => conn.acks.includes(2));
    expect(Buffer.concat(data).toString()).toBe("good");
    expect(dc.stats.badMessages).toBe(2);
  });

  it("checkAlive: one message the agent acknowledges proves the path; no acknowledgement within the deadline is a dead path", async () => {
    const { dc, conn } = await openChannel({ livenessTimeoutMs: 300 });
    const nop = Buffer.from([1, 3, 0, 0, 0, 0, 0, 0]); // smux v1 NOP, stream 0
    const isNop = (m: { payloadType: number; payload: Buffer }) => m.payloadType === PayloadType.Output && m.payload.equals(nop);
    const alive = dc.checkAlive(nop);
    await conn.until(() => conn.received.some(isNop));
    conn.ack(conn.received.find(isNop)!);
    await alive;
    expect(dc.outstanding).toBe(0);
    const sent = conn.received.filter(isNop).length;
    await expect(dc.checkAlive(nop)).rejects.toThrow("the SSM agent did not acknowledge a keep-alive within 300 ms (session s-1)");
    expect(conn.received.filter(isNop).length).toBeGreaterThan(sent); // sent (and resent) meanwhile
  });

  it("an idle channel keeps one timer (the websocket ping): the 100 ms resend check runs only while something is unacknowledged", async () => {
    const clock = new ManualClock(Date.now());
    const { dc, conn } = await openChannel({ clock });
    for (const m of conn.received) conn.ack(m);
    await conn.until(() => dc.outstanding === 0);
    expect(clock.pending).toBe(1);
    dc.write(Buffer.from("x"));
    expect(clock.pending).toBe(2);
    const isX = (m: { payloadType: number; payload: Buffer }) => m.payloadType === PayloadType.Output && m.payload.toString() === "x";
    await conn.until(() => conn.received.some(isX));
    conn.ack(conn.received.find(isX)!);
    await conn.until(() => dc.outstanding === 0);
    expect(clock.pending).toBe(1);
  });

  it("reports the agent's ConnectToPortError flag", async () => {
    const { dc, conn } = await openChannel();
    const flags: number[] = [];
    dc.on("flag", (f) => flags.push(f));
    conn.send(AgentConnection.output(2, PayloadType.Flag, encodeFlag(FlagValue.ConnectToPortError)));
    await conn.until(() => conn.acks.includes(2));
    expect(flags).toEqual([FlagValue.ConnectToPortError]);
  });
});

describe("data channel drops and closes", () => {
  it("resumes after a drop in mid-transfer: same ClientId, new token, sequence numbers kept, unacknowledged data resent", async () => {
    const logs: string[] = [];
    const logger = { debug: () => {}, info: (m: string) => logs.push(m), warn: (m: string) => logs.push(m), error: (m: string) => logs.push(m) };
    const { dc, conn, resumes } = await openChannel({ logger });
    const payload = seededBytes(10_000);
    dc.write(payload); // 10 messages of up to 1024 bytes, none acknowledged
    await conn.until(() => conn.received.filter((m) => m.payloadType === PayloadType.Output).length >= 10);
    const next = agent.nextConnection();
    conn.ws.terminate();
    const second = await next;
    const reopened = await second.opening();
    expect(resumes).toHaveLength(1);
    expect(reopened.ClientId).toBe(conn.open!.ClientId);
    expect(reopened.TokenValue).toBe("token-resumed-1");
    expect(logs.filter((m) => /^data channel resumed after \d+ ms$/.test(m))).toHaveLength(1);
    await second.until(() => second.outputBytes().length >= payload.length);
    expect(second.outputBytes().equals(payload)).toBe(true);
    const firstSeqs = conn.received.filter((m) => m.payloadType === PayloadType.Output).map((m) => m.sequenceNumber);
    const resentSeqs = second.received.filter((m) => m.payloadType === PayloadType.Output).slice(0, 10).map((m) => m.sequenceNumber);
    expect(resentSeqs).toEqual(firstSeqs.slice(0, 10));
    for (const m of second.received) second.ack(m);
    await second.until(() => dc.outstanding === 0);
    // New data continues the numbering; the agent's numbering continues too (no new handshake).
    dc.write(Buffer.from("after"));
    await second.until(() => second.received.some((m) => m.payload.toString() === "after"));
    expect(second.received.find((m) => m.payload.toString() === "after")!.sequenceNumber).toBe(Math.max(...firstSeqs) + 1);
    const data = collect(dc);
    second.send(AgentConnection.output(2, PayloadType.Output, Buffer.from("continued")));
    await second.until(() => second.acks.includes(2));
    expect(Buffer.concat(data).toString()).toBe("continued");
    expect(dc.stats.resumes).toBe(1);
  });

  it("reconnects when acknowledgements stop although the websocket looks open", async () => {
    const { dc, conn, resumes } = await openChannel({ ackStallTimeoutMs: 400 });
    const next = agent.nextConnection();
    dc.write(Buffer.from("into the void"));
    const second = await next;
    expect(resumes).toHaveLength(1);
    await second.until(() => second.received.some((m) => m.payload.toString() === "into the void"));
    expect(conn.ws.readyState).not.toBe(1); // the old socket was abandoned
  });

  it("ends on channel_closed with the service's reason, without resuming", async () => {
    const { dc, conn, resumes } = await openChannel();
    const ended = new Promise<DataChannelEnd>((resolve) => dc.once("end", resolve));
    conn.send(encodeChannelClosedMessage({ sessionId: "s-1", destinationId: "i-0", output: "Your session timed out due to inactivity and has been terminated." }, Date.now()));
    const end = await ended;
    expect(end.kind).toBe("channel-closed");
    expect(end.kind !== "stopped" && end.problem.message).toContain("timed out due to inactivity");
    expect(resumes).toHaveLength(0);
  });

  it("declares the session lost when resuming keeps failing, without leaking the token", async () => {
    const { dc, conn } = await openChannel({
      resumeTimeoutMs: 800,
      resume: async () => {
        throw new Error("ResumeSession refused");
      },
    });
    const ended = new Promise<DataChannelEnd>((resolve) => dc.once("end", resolve));
    conn.ws.terminate();
    const end = await ended;
    expect(end.kind).toBe("lost");
    expect(JSON.stringify(end)).toContain("ResumeSession refused");
    expect(JSON.stringify(end)).not.toContain("token-initial-secret");
  });

  it("sends Flag TerminateSession when closed on purpose", async () => {
    const { dc, conn } = await openChannel();
    await dc.close({ terminate: true });
    await conn.until(() => conn.received.some((m) => m.payloadType === PayloadType.Flag));
    const flag = conn.received.find((m) => m.payloadType === PayloadType.Flag)!;
    expect(flag.payload.readUInt32BE(0)).toBe(FlagValue.TerminateSession);
  });
});
