import { once } from "node:events";
import { describe, expect, it } from "vitest";
import { encodeSmuxFrame, SmuxCommand } from "./smux-frame.js";
import { SmuxSession, SmuxSessionClosedError } from "./smux-session.js";
import type { SmuxStream } from "./smux-session.js";

/** Two sessions wired back to back through plain function calls (asynchronously, like a transport). */
function pair() {
  const wire: Buffer[] = [];
  let server!: SmuxSession;
  const client = new SmuxSession({
    role: "client",
    output: (chunk) => {
      wire.push(chunk);
      queueMicrotask(() => server.receive(chunk));
      return true;
    },
  });
  server = new SmuxSession({ role: "server", output: (chunk) => (queueMicrotask(() => client.receive(chunk)), true) });
  return { client, server, wire };
}

async function readAll(stream: SmuxStream): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const part of stream) parts.push(part as Buffer);
  return Buffer.concat(parts);
}

describe("SmuxSession", () => {
  it("opens odd client stream ids from 3 and carries bytes both ways", async () => {
    const { client, server, wire } = pair();
    const accepted: SmuxStream[] = [];
    server.on("stream", (s) => {
      accepted.push(s);
      s.pipe(s); // echo
    });
    const a = client.openStream();
    const b = client.openStream();
    expect([a.id, b.id]).toEqual([3, 5]);
    expect(wire[0]!.toString("hex")).toBe("0100000003000000");
    const big = Buffer.alloc(100_000, 7);
    a.end(big);
    b.end("small");
    const [echoA, echoB] = await Promise.all([readAll(a), readAll(b)]);
    expect(echoA.equals(big)).toBe(true);
    expect(echoB.toString()).toBe("small");
    expect(accepted.map((s) => s.id)).toEqual([3, 5]);
    // 100000 bytes need four PSH frames of at most 32768.
    const pshFor3 = wire.filter((f) => f[1] === SmuxCommand.Psh && f.readUInt32LE(4) === 3);
    expect(pshFor3.map((f) => f.readUInt16LE(2))).toEqual([32768, 32768, 32768, 1696]);
  });

  it("a FIN from the peer ends the stream entirely (no half-close)", async () => {
    const { client, server } = pair();
    const serverSide = once(server, "stream") as Promise<[SmuxStream]>;
    const stream = client.openStream();
    stream.write("x");
    const [remote] = await serverSide;
    remote.resume();
    remote.end();
    await once(stream.resume(), "close");
    expect(stream.writable).toBe(false);
    await once(remote, "close");
    expect(client.streamCount).toBe(0);
    expect(server.streamCount).toBe(0);
  });

  it("holds write callbacks while the transport is saturated", async () => {
    let accept = false;
    const sent: Buffer[] = [];
    const session = new SmuxSession({ role: "client", output: (c) => (sent.push(c), accept) });
    const stream = session.openStream();
    let done = false;
    stream.write(Buffer.alloc(10), () => (done = true));
    await new Promise((r) => setImmediate(r));
    expect(done).toBe(false);
    accept = true;
    session.resumeOutput();
    await new Promise((r) => setImmediate(r));
    expect(done).toBe(true);
    expect(sent.length).toBe(2);
  });

  it("ignores data for unknown streams and closes on a protocol error", async () => {
    const session = new SmuxSession({ role: "server", output: () => true });
    const streams: SmuxStream[] = [];
    session.on("stream", (s) => streams.push(s));
    session.receive(encodeSmuxFrame(SmuxCommand.Psh, 9, Buffer.from("lost")));
    session.receive(encodeSmuxFrame(SmuxCommand.Syn, 3));
    expect(streams.map((s) => s.id)).toEqual([3]);
    const errored = once(streams[0]!, "error");
    const closed = once(session, "close");
    session.receive(Buffer.from("0900000003000000", "hex"));
    const [err] = await errored;
    expect(String(err)).toMatch(/smux version 9/);
    await closed;
    expect(session.isClosed).toBe(true);
    expect(() => session.openStream()).toThrow(SmuxSessionClosedError);
  });

  it("a client refuses streams the peer opens (FIN back), so none is left without an owner when the session fails", async () => {
    const sent: Buffer[] = [];
    const session = new SmuxSession({ role: "client", output: (c) => (sent.push(c), true) });
    // A SYN from the peer, then data for it, then a SYN for an id the client opens next.
    session.receive(Buffer.concat([encodeSmuxFrame(SmuxCommand.Syn, 7), encodeSmuxFrame(SmuxCommand.Psh, 7, Buffer.from("unasked")), encodeSmuxFrame(SmuxCommand.Syn, 3)]));
    expect(session.streamCount).toBe(0);
    expect(sent.map((f) => f.toString("hex"))).toEqual([encodeSmuxFrame(SmuxCommand.Fin, 7), encodeSmuxFrame(SmuxCommand.Fin, 3)].map((f) => f.toString("hex")));
    // The client's own stream 3 is its own, not the peer's.
    const own = session.openStream();
    expect(own.id).toBe(3);
    const errored = once(own, "error");
    // A protocol error ends the session: only the client's own stream gets the error (one without a listener
    // would have thrown it out of receive(), and out of the process).
    session.receive(Buffer.from("0900000003000000", "hex"));
    const [err] = (await errored) as [Error];
    expect(err.message).toMatch(/smux version 9/);
    expect(session.isClosed).toBe(true);
  });

  it("keep-alive sends NOPs and closes a silent session", async () => {
    const sent: Buffer[] = [];
    const session = new SmuxSession({ role: "server", output: (c) => (sent.push(c), true), keepAlive: { intervalMs: 10, timeoutMs: 40 } });
    const [err] = (await once(session, "close")) as [Error];
    expect(err.message).toMatch(/keep-alive timeout/);
    expect(sent.some((f) => f[1] === SmuxCommand.Nop)).toBe(true);
  });
});
