import { once } from "node:events";
import net from "node:net";
import { Duplex, PassThrough } from "node:stream";
import { describe, expect, it } from "vitest";
import { BackendMessages, buildErrorResponse, decodeErrorFields, frame, FrontendMessages, readBackendFrame } from "@rdsd/pg-wire";
import { relay, RELAY_BATCH_LIMIT_BYTES, type SessionWatch } from "./relay.js";

/** A destination that records how its writes were grouped, and completes each one only when told to. */
class RecordingDestination extends Duplex {
  readonly batches: number[][] = [];
  private pending: Array<() => void> = [];
  constructor(private readonly autoComplete: boolean) {
    super({ read() {} });
  }
  override _write(chunk: Buffer, _encoding: BufferEncoding, done: (err?: Error | null) => void): void {
    this.batches.push([chunk.length]);
    this.complete(done);
  }
  override _writev(chunks: Array<{ chunk: Buffer }>, done: (err?: Error | null) => void): void {
    this.batches.push(chunks.map((c) => c.chunk.length));
    this.complete(done);
  }
  /** Finishes the write in flight, as a socket does once the kernel has taken the bytes. */
  completeWrites(): void {
    const pending = this.pending;
    this.pending = [];
    for (const done of pending) done();
  }
  private complete(done: () => void): void {
    if (this.autoComplete) done();
    else this.pending.push(done);
  }
}

function paused(): PassThrough {
  const source = new PassThrough();
  source.pause(); // as the login leaves it
  return source;
}

const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve));

describe("relay batching", () => {
  it("chunks handed over in one turn, with the tick queue drained between them, leave in one writev", async () => {
    const source = paused();
    const destination = new RecordingDestination(true);
    const done = relay(source, destination);
    // Node hands a TLS socket's records to JS one callback each and runs next-tick callbacks in between:
    // the same happens here by writing each chunk from the previous one's next tick.
    const sizes = [8192, 8192, 8192, 8192, 100];
    const writeFrom = (i: number) => {
      if (i === sizes.length) return;
      source.write(Buffer.alloc(sizes[i]!, i));
      process.nextTick(writeFrom, i + 1);
    };
    writeFrom(0);
    await nextTurn();
    expect(destination.batches).toEqual([sizes]);

    // A later turn starts a batch of its own.
    source.write(Buffer.alloc(10));
    await nextTurn();
    expect(destination.batches).toEqual([sizes, [10]]);
    destination.destroy();
    await done;
  });

  it("the source ending flushes what is batched, then ends the destination", async () => {
    const source = paused();
    const destination = new RecordingDestination(true);
    const finished = once(destination, "finish");
    void relay(source, destination);
    source.end(Buffer.from("last words"));
    await finished;
    expect(destination.batches).toEqual([[10]]);
    destination.destroy();
  });

  it("pauses the source only once the destination holds more than a burst, and resumes it on drain", async () => {
    const source = paused();
    const destination = new RecordingDestination(false);
    const done = relay(source, destination);
    const chunk = Buffer.alloc(8192);
    // Past the socket's 16 KB highWaterMark but within the batch limit: still flowing.
    for (let sent = 0; sent + chunk.length <= RELAY_BATCH_LIMIT_BYTES; sent += chunk.length) source.write(chunk);
    await nextTurn();
    expect(destination.writableLength).toBe(RELAY_BATCH_LIMIT_BYTES);
    expect(source.isPaused()).toBe(false);
    // One more chunk tips it over.
    source.write(chunk);
    expect(source.isPaused()).toBe(true);
    // Further bytes wait in the source, not in the destination.
    source.write(chunk);
    await nextTurn();
    expect(destination.writableLength).toBe(RELAY_BATCH_LIMIT_BYTES + chunk.length);
    // The destination taking the bytes (the batch, then the chunk queued behind it) drains it: the source flows again.
    const resumed = once(source, "resume");
    destination.completeWrites();
    await nextTurn();
    destination.completeWrites();
    await resumed;
    expect(source.isPaused()).toBe(false);
    await nextTurn();
    destination.completeWrites();
    expect(destination.writableLength).toBe(0);
    expect(destination.batches).toEqual([Array(8).fill(chunk.length), [chunk.length], [chunk.length]]);
    const total = destination.batches.flat().reduce((a, b) => a + b, 0);
    expect(total).toBe(RELAY_BATCH_LIMIT_BYTES + 2 * chunk.length);
    destination.destroy();
    await done;
  });
});

describe("relay without a writev", () => {
  it("a destination with only _write still gets every byte, in order", async () => {
    const received: Buffer[] = [];
    const destination = new Duplex({
      read() {},
      write(chunk: Buffer, _encoding, done) {
        received.push(chunk);
        done();
      },
    });
    const source = paused();
    const done = relay(source, destination);
    for (let i = 0; i < 5; i++) source.write(Buffer.from([i]));
    await nextTurn();
    expect(Buffer.concat(received)).toEqual(Buffer.from([0, 1, 2, 3, 4]));
    destination.destroy();
    await done;
  });
});

/** Two connected loopback sockets: the proxy's end and the peer's. */
async function socketPair(): Promise<{ proxySide: net.Socket; peer: net.Socket; close(): void }> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const accepted = once(server, "connection") as Promise<[net.Socket]>;
  const peer = net.connect((server.address() as net.AddressInfo).port, "127.0.0.1");
  const [proxySide] = await accepted;
  await once(peer, "connect");
  peer.on("error", () => {});
  return { proxySide, peer, close: () => server.close() };
}

/** Everything a socket receives until it closes. */
function received(socket: net.Socket): Promise<Buffer> {
  const chunks: Buffer[] = [];
  socket.on("data", (c: Buffer) => chunks.push(c));
  return new Promise((resolve) => socket.once("close", () => resolve(Buffer.concat(chunks))));
}

function watchOf(): SessionWatch {
  return {
    frontend: new FrontendMessages(),
    backend: new BackendMessages(),
    keepOnCleanEnd: () => true,
    dropNotice: (error) => buildErrorResponse({ severity: "FATAL", code: "08006", message: `dropped: ${error?.message ?? "closed"}` }),
  };
}

const ready = () => frame("Z", Buffer.from("I"));
const row = () => frame("D", Buffer.alloc(40, 0x61));

describe("relay with a session watch: when bytes leave", () => {
  /** Feeds `chunks` to the upstream side in one turn; says which batches reached the client before the turn's check phase. */
  async function batchesWithinTurn(chunks: Buffer[]): Promise<{ early: number[][]; all: number[][] }> {
    const upstream = paused();
    const client = new RecordingDestination(true);
    const done = relay(client, upstream, watchOf());
    let turnEnded = false;
    let early: number[][] = [];
    // Scheduled before the chunks arrive, so it runs before any setImmediate the relay makes for them.
    setImmediate(() => {
      turnEnded = true;
      early = client.batches.map((b) => [...b]);
    });
    for (const chunk of chunks) upstream.write(chunk);
    await nextTurn();
    await nextTurn();
    expect(turnEnded).toBe(true);
    upstream.destroy();
    client.destroy();
    await done;
    return { early, all: client.batches };
  }

  it("a response that ends with ReadyForQuery reaches the client at once, not at the turn's end", async () => {
    const response = Buffer.concat([row(), frame("C", Buffer.from("SELECT 1\0")), ready()]);
    const { early } = await batchesWithinTurn([response]);
    expect(early.flat()).toEqual([response.length]);
  });

  it("records of one response arriving in one turn leave together once the ReadyForQuery is complete", async () => {
    const response = Buffer.concat([row(), row(), row(), frame("C", Buffer.from("SELECT 3\0")), ready()]);
    // Split inside the ReadyForQuery's header: the end is known only with the last chunk.
    const cuts = [30, 60, response.length - 3];
    const chunks = [response.subarray(0, cuts[0]), response.subarray(cuts[0], cuts[1]), response.subarray(cuts[1], cuts[2]), response.subarray(cuts[2])];
    const { early } = await batchesWithinTurn(chunks);
    expect(early).toEqual([chunks.map((c) => c.length)]);
  });

  it("a client's request reaches the server at once", async () => {
    const client = paused();
    const upstream = new RecordingDestination(true);
    const done = relay(client, upstream, watchOf());
    let early: number[][] | undefined;
    setImmediate(() => (early = upstream.batches.map((b) => [...b])));
    const query = frame("Q", Buffer.from("select 1\0"));
    client.write(query);
    await nextTurn();
    expect(early).toEqual([[query.length]]);
    client.destroy();
    upstream.destroy();
    await done;
  });

  it("a part of a response (no ReadyForQuery yet) waits for the turn's end", async () => {
    const { early, all } = await batchesWithinTurn([row(), row()]);
    expect(early).toEqual([]);
    expect(all).toEqual([[row().length, row().length]]);
  });
});

describe("relay with a session watch", () => {
  it("the server side ending at a message boundary: the client gets the drop notice after what was sent, then the close", async () => {
    const client = await socketPair();
    const upstream = await socketPair();
    const got = received(client.peer);
    const done = relay(client.proxySide, upstream.proxySide, watchOf());
    upstream.peer.end(Buffer.concat([row(), ready()]));
    const bytes = await got;
    expect(await done).toBe("closed");
    const sent = Buffer.concat([row(), ready()]);
    expect(bytes.subarray(0, sent.length)).toEqual(sent);
    const notice = readBackendFrame(bytes.subarray(sent.length));
    if (notice.status !== "ok") throw new Error("no notice");
    expect(decodeErrorFields(notice.frame.body)).toMatchObject({ severity: "FATAL", code: "08006", message: "dropped: closed" });
    client.close();
    upstream.close();
  });

  it("the server side vanishing mid-message: the client gets the bytes it was sent and a close, nothing added", async () => {
    const client = await socketPair();
    const upstream = await socketPair();
    const got = received(client.peer);
    const done = relay(client.proxySide, upstream.proxySide, watchOf());
    const half = row().subarray(0, 20);
    upstream.peer.write(Buffer.concat([ready(), half]));
    // Wait until the half message is through before the server vanishes.
    await new Promise<void>((resolve) => {
      let seen = 0;
      const count = (c: Buffer) => {
        seen += c.length;
        if (seen < ready().length + half.length) return;
        client.peer.off("data", count);
        resolve();
      };
      client.peer.on("data", count);
    });
    upstream.peer.resetAndDestroy();
    const bytes = await got;
    await done;
    expect(bytes).toEqual(Buffer.concat([ready(), half]));
    client.close();
    upstream.close();
  });

  it("the server's own FATAL before its close is all the client gets", async () => {
    const client = await socketPair();
    const upstream = await socketPair();
    const got = received(client.peer);
    const done = relay(client.proxySide, upstream.proxySide, watchOf());
    const fatal = buildErrorResponse({ severity: "FATAL", code: "57P01", message: "terminating connection due to administrator command" });
    upstream.peer.end(fatal);
    expect(await got).toEqual(fatal);
    await done;
    client.close();
    upstream.close();
  });

  it("a clean Terminate keeps the server connection: not sent upstream, the relay lets go, the client is ended", async () => {
    const client = await socketPair();
    const upstream = await socketPair();
    const upstreamGot: Buffer[] = [];
    upstream.peer.on("data", (c: Buffer) => upstreamGot.push(c));
    const clientClosed = received(client.peer);
    const done = relay(client.proxySide, upstream.proxySide, watchOf());
    const query = frame("Q", Buffer.from("select 1\0"));
    client.peer.write(query);
    await new Promise<void>((resolve) => upstream.peer.once("data", () => resolve()));
    upstream.peer.write(Buffer.concat([row(), frame("C", Buffer.from("SELECT 1\0")), ready()]));
    await new Promise<void>((resolve) => client.peer.once("data", () => resolve()));
    client.peer.write(frame("X", Buffer.alloc(0)));
    expect(await done).toBe("released");
    await clientClosed;
    expect(Buffer.concat(upstreamGot)).toEqual(query);
    expect(upstream.proxySide.destroyed).toBe(false);
    upstream.proxySide.destroy();
    client.close();
    upstream.close();
  });
});
