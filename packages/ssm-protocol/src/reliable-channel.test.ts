import { describe, expect, it } from "vitest";
import { decodeClientMessage, encodeClientMessage, MessageType, PayloadType } from "./client-message.js";
import { decodeAcknowledgeContent, encodeAcknowledgeMessage } from "./payloads.js";
import { ReliableChannel } from "./reliable-channel.js";

let counter = 0;
const ids = () => `00000000-0000-4000-8000-${(counter++).toString(16).padStart(12, "0")}`;

function clientMessage(seq: number, text: string, now = 1000): Buffer {
  return encodeClientMessage({
    messageType: MessageType.InputStreamData,
    createdDate: now,
    sequenceNumber: seq,
    flags: 0,
    messageId: ids(),
    payloadType: PayloadType.Output,
    payload: Buffer.from(text),
  });
}

function ackedSeqs(replies: Buffer[]): number[] {
  return replies.map((r) => decodeAcknowledgeContent(decodeClientMessage(r).payload).AcknowledgedMessageSequenceNumber);
}

describe("ReliableChannel", () => {
  it("numbers its messages from 0 with the role's message type", () => {
    const agent = new ReliableChannel({ role: "agent", newMessageId: ids });
    const first = decodeClientMessage(agent.send(PayloadType.HandshakeRequest, Buffer.from("{}"), 1000, 1));
    const second = decodeClientMessage(agent.send(PayloadType.Output, Buffer.from("x"), 1001));
    expect([first.messageType, first.sequenceNumber, first.flags]).toEqual(["output_stream_data", 0, 1]);
    expect([second.sequenceNumber, second.flags]).toEqual([1, 0]);
    const client = new ReliableChannel({ role: "client", newMessageId: ids });
    expect(decodeClientMessage(client.send(1, Buffer.from("y"), 1)).messageType).toBe("input_stream_data");
  });

  it("records a message as outstanding before it is written, so an instant ack clears it", () => {
    const agent = new ReliableChannel({ role: "agent", newMessageId: ids });
    const client = new ReliableChannel({ role: "client", newMessageId: ids });
    const bytes = agent.send(PayloadType.Output, Buffer.from("data"), 1000);
    expect(agent.outstandingCount).toBe(1);
    const atClient = client.receive(bytes, 1000);
    const atAgent = agent.receive(atClient.replies[0]!, 1000);
    expect(atAgent.acknowledged).toEqual([0]);
    expect(agent.outstandingCount).toBe(0);
    expect(agent.tick(5000)).toEqual([]);
  });

  it("delivers in order, buffers early messages and acknowledges each one", () => {
    const agent = new ReliableChannel({ role: "agent", newMessageId: ids });
    const r2 = agent.receive(clientMessage(2, "c"), 1000);
    const r1 = agent.receive(clientMessage(1, "b"), 1000);
    expect(r2.delivered).toEqual([]);
    expect(ackedSeqs(r2.replies)).toEqual([2]);
    expect(ackedSeqs(r1.replies)).toEqual([1]);
    expect(agent.bufferedCount).toBe(2);
    const r0 = agent.receive(clientMessage(0, "a"), 1000);
    expect(r0.delivered.map((m) => m.payload.toString())).toEqual(["a", "b", "c"]);
    expect(agent.expectedReceiveSequence).toBe(3);
    expect(agent.bufferedCount).toBe(0);
  });

  it("acknowledges a duplicate again without delivering it twice", () => {
    const agent = new ReliableChannel({ role: "agent", newMessageId: ids });
    agent.receive(clientMessage(0, "a"), 1000);
    const dup = agent.receive(clientMessage(0, "a"), 1100);
    expect(dup.delivered).toEqual([]);
    expect(ackedSeqs(dup.replies)).toEqual([0]);
    const ack = decodeClientMessage(dup.replies[0]!);
    expect([ack.messageType, ack.sequenceNumber, ack.flags]).toEqual(["acknowledge", 0, 3]);
    expect(decodeAcknowledgeContent(ack.payload).AcknowledgedMessageType).toBe("input_stream_data");
  });

  it("resends the oldest unacknowledged message once the timeout (200 ms at first) has passed", () => {
    const agent = new ReliableChannel({ role: "agent", newMessageId: ids });
    const m0 = agent.send(PayloadType.Output, Buffer.from("0"), 1000);
    agent.send(PayloadType.Output, Buffer.from("1"), 1000);
    expect(agent.retransmissionTimeoutMs).toBe(200);
    expect(agent.tick(1100)).toEqual([]);
    expect(agent.tick(1200)).toEqual([]);
    expect(agent.tick(1300)).toEqual([m0]);
    expect(agent.tick(1400)).toEqual([]); // its clock restarted at 1300
  });

  it("follows the round-trip time and caps the timeout at 1 s", () => {
    const agent = new ReliableChannel({ role: "agent", newMessageId: ids });
    const client = new ReliableChannel({ role: "client", newMessageId: ids });
    let now = 0;
    for (let i = 0; i < 50; i++) {
      now += 10;
      const reply = client.receive(agent.send(PayloadType.Output, Buffer.from("x"), now), now + 5).replies[0]!;
      agent.receive(reply, now + 10); // 10 ms round trip
    }
    expect(agent.roundTripTimeMs).toBeLessThan(12);
    expect(agent.retransmissionTimeoutMs).toBeLessThan(40);
    for (let i = 0; i < 30; i++) {
      now += 10_000;
      const reply = client.receive(agent.send(PayloadType.Output, Buffer.from("x"), now), now).replies[0]!;
      agent.receive(reply, now + 5000); // 5 s round trip
    }
    expect(agent.retransmissionTimeoutMs).toBe(1000);
  });

  it("keeps sequence numbers across a reconnect and resends what was not acknowledged", () => {
    const agent = new ReliableChannel({ role: "agent", newMessageId: ids });
    const client = new ReliableChannel({ role: "client", newMessageId: ids });
    const sent = [0, 1, 2].map((i) => agent.send(PayloadType.Output, Buffer.from(String(i)), 1000));
    agent.receive(client.receive(sent[0]!, 1000).replies[0]!, 1000);
    // The connection drops: 1 and 2 are lost. After resume:
    const resent = agent.resendAll(2000);
    expect(resent).toEqual([sent[1], sent[2]]);
    const delivered = resent.flatMap((b) => client.receive(b, 2000).delivered.map((m) => m.payload.toString()));
    expect(delivered).toEqual(["1", "2"]);
    const next = decodeClientMessage(agent.send(PayloadType.Output, Buffer.from("3"), 2001));
    expect(next.sequenceNumber).toBe(3);
  });

  it("reports bad bytes and does nothing else", () => {
    const agent = new ReliableChannel({ role: "agent", newMessageId: ids });
    const bad = clientMessage(0, "a");
    bad[bad.length - 1] = bad[bad.length - 1]! ^ 1;
    const result = agent.receive(bad, 1000);
    expect(result.error?.message).toMatch(/PayloadDigest/);
    expect(result.replies).toEqual([]);
    expect(agent.expectedReceiveSequence).toBe(0);
  });

  it("passes service messages through and ignores acknowledgements it did not ask for", () => {
    const client = new ReliableChannel({ role: "client", newMessageId: ids });
    const ack = encodeAcknowledgeMessage({ messageType: "input_stream_data", messageId: ids(), sequenceNumber: 42 }, 1);
    expect(client.receive(ack, 2).acknowledged).toEqual([]);
    const pause = encodeClientMessage({
      messageType: MessageType.PausePublication,
      createdDate: 1,
      sequenceNumber: 0,
      flags: 0,
      messageId: ids(),
      payloadType: 0,
      payload: Buffer.alloc(0),
    });
    expect(client.receive(pause, 2).control.map((m) => m.messageType)).toEqual(["pause_publication"]);
  });
});
