import type { Socket } from "node:net";
import type { Duplex } from "node:stream";
import { endedCleanly, type BackendMessages, type FrontendMessages } from "@rdsd/pg-wire";

/** How long a client may take to read the last bytes after the server has gone. */
const DRAIN_AFTER_UPSTREAM_CLOSE_MS = 5_000;

/**
 * What the relay follows and decides about a session, when it is given one: the message boundaries both ways
 * (headers only, see @rdsd/pg-wire's message-boundaries), whether a clean end may keep the server connection,
 * and what to tell a client whose server side vanished.
 */
export interface SessionWatch {
  frontend: FrontendMessages;
  backend: BackendMessages;
  /**
   * Asked when the client ends cleanly (a whole Terminate at a boundary, every request answered, the server idle
   * outside a transaction): true keeps the server connection (the Terminate is not sent, the relay lets go of it).
   */
  keepOnCleanEnd(): boolean;
  /**
   * The FATAL ErrorResponse for a client whose server side ended on its own at a message boundary (not after
   * the server's own ErrorResponse, not after the client's Terminate). `error` is the upstream's, if any.
   */
  dropNotice(error: Error | undefined): Buffer;
}

/** Rewrites the server's bytes on their way to the client (a readOnly target's error hint). */
export type ChunkRewriter = (chunk: Buffer) => Buffer;

/** How a relay ended: both sides closed, or the client ended cleanly and the server connection was kept. */
export type RelayEnd = "closed" | "released";

/**
 * Joins client and server after login: bytes both ways with backpressure. With a SessionWatch the bytes are
 * followed message by message (length headers only, nothing copied). The client leaving ends the server
 * connection at once (RDS connection slots are precious) unless the watch keeps it; the server leaving ends
 * the client after what was already sent is flushed (with a FATAL saying so, at a boundary, under a watch).
 * Resolves "closed" when both are closed, "released" as soon as the server connection was kept: it is then
 * the caller's, paused, with no listener of the relay's left on it; the client is being ended.
 * `toClient`, only for targets that need it, rewrites each chunk from the server after the watch has seen it
 * as the server sent it.
 */
export function relay(client: Socket | Duplex, upstream: Socket | Duplex, watch?: SessionWatch, toClient?: ChunkRewriter): Promise<RelayEnd> {
  return new Promise((resolve) => {
    let open = 2;
    let released = false;
    let upstreamGone = false;
    const closed = () => {
      if (--open === 0 && !released) resolve("closed");
    };

    const onClientClose = () => {
      upstream.destroy();
      closed();
    };
    const endClient = (error: Error | undefined) => {
      if (upstreamGone) return;
      upstreamGone = true;
      if (client.destroyed) return;
      const told = watch !== undefined && watch.frontend.terminateAt === undefined;
      if (told && watch.backend.atBoundary && watch.backend.lastType !== ERROR_RESPONSE) {
        client.end(watch.dropNotice(error));
      } else if (error) {
        client.destroy();
        return;
      } else {
        client.end();
      }
      setTimeout(() => client.destroy(), DRAIN_AFTER_UPSTREAM_CLOSE_MS).unref();
    };
    const onUpstreamClose = () => {
      endClient(undefined);
      closed();
    };
    // Errors end both sides; 'close' follows and does the bookkeeping.
    const onClientError = () => upstream.destroy();
    const onUpstreamError = (err: Error) => endClient(err);
    client.once("close", onClientClose);
    upstream.once("close", onUpstreamClose);
    client.on("error", onClientError);
    upstream.on("error", onUpstreamError);

    let inspectClient: ((chunk: Buffer) => boolean) | undefined;
    let inspectUpstream: ((chunk: Buffer) => boolean) | undefined;
    // Without a watch the relay cannot tell where a response ends: every chunk waits for the turn's end.
    let requestComplete = batchUntilTurnEnds;
    let responseComplete = batchUntilTurnEnds;
    if (watch) {
      const { frontend, backend } = watch;
      inspectUpstream = (chunk) => {
        backend.feed(chunk);
        return true;
      };
      responseComplete = () => backend.atBoundary && backend.lastType === READY_FOR_QUERY;
      requestComplete = sendAtOnce;
      inspectClient = (chunk) => {
        frontend.feed(chunk);
        if (frontend.terminateAt === undefined || !endedCleanly(frontend, backend) || !watch.keepOnCleanEnd()) return true;
        // A clean end: the server connection stays open and idle; the Terminate is not sent.
        released = true;
        upstream.pause();
        stopClientToUpstream();
        stopUpstreamToClient();
        client.off("close", onClientClose);
        client.off("error", onClientError);
        upstream.off("close", onUpstreamClose);
        upstream.off("error", onUpstreamError);
        client.pause();
        client.end();
        resolve("released");
        return false;
      };
    }
    // Under a watch a client's read (a request, or a slice of a COPY) leaves at once; the server's reads come one
    // TLS record per callback and are batched until the response is complete (a ReadyForQuery at a boundary).
    const stopClientToUpstream = forward(client, upstream, inspectClient, requestComplete, () => upstream.end());
    const stopUpstreamToClient = forward(upstream, client, inspectUpstream, responseComplete, () => endClient(undefined), toClient);
  });
}

const sendAtOnce = () => true;
const batchUntilTurnEnds = () => false;
const READY_FOR_QUERY = "Z".charCodeAt(0);
const ERROR_RESPONSE = "E".charCodeAt(0);

/**
 * How much a destination may hold before its source is paused. Above a socket's highWaterMark (16 KB on
 * Node 20) so that a whole network read's worth of TLS records (64 KB: eight of PostgreSQL's 8 KB records)
 * is batched into one write rather than the source stopping and restarting its reads mid-burst.
 */
export const RELAY_BATCH_LIMIT_BYTES = 64 * 1024;

/**
 * Moves bytes one way with backpressure, like pipe() but batching writes. A chunk after which `sendNow` says
 * nothing more is due (the end of a response) is written at once, with whatever was batched before it: a
 * request/response exchange costs no extra loop turn. Any other chunk corks the destination until the turn's
 * check phase (setImmediate), so the records of a burst leave in one writev. Not process.nextTick: Node
 * drains the tick queue after every chunk it hands to JS (a TLS socket emits each record of a network read in
 * its own callback), so a next-tick uncork flushes every record alone: 8 KB writes for a COPY TO. `inspect`
 * sees each chunk first and may keep it (false); `rewrite` then gives the bytes to send for it (none while it
 * holds them). Returns the function that detaches it from both streams.
 */
function forward(
  from: Duplex,
  to: Duplex,
  inspect: ((chunk: Buffer) => boolean) | undefined,
  sendNow: () => boolean,
  onEnd: () => void,
  rewrite?: ChunkRewriter,
): () => void {
  let corked = false;
  let flushScheduled = false;
  const uncork = () => {
    if (!corked) return;
    corked = false;
    to.uncork();
  };
  const flushAtTurnEnd = () => {
    flushScheduled = false;
    uncork();
  };
  const onData = (data: Buffer) => {
    if (inspect !== undefined && !inspect(data)) return;
    const chunk = rewrite === undefined ? data : rewrite(data);
    if (chunk.length === 0) return;
    const now = sendNow();
    if (!now && !corked) {
      corked = true;
      to.cork();
      if (!flushScheduled) {
        flushScheduled = true;
        setImmediate(flushAtTurnEnd);
      }
    }
    const accepted = to.write(chunk);
    if (now) uncork();
    // Pause only when write() said so (then 'drain' is due) and the destination holds more than a burst.
    if (!accepted && to.writableLength > RELAY_BATCH_LIMIT_BYTES) from.pause();
  };
  const onDrain = () => from.resume();
  from.on("data", onData);
  to.on("drain", onDrain);
  // The source ending ends the destination (end() flushes a corked destination first).
  from.once("end", onEnd);
  // The login left both sides paused (explicitly, so a 'data' listener alone would not start the flow).
  from.resume();
  return () => {
    from.off("data", onData);
    to.off("drain", onDrain);
    from.off("end", onEnd);
  };
}
