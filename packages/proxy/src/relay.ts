import type { Socket } from "node:net";
import type { Duplex } from "node:stream";

/** How long a client may take to read the last bytes after the server has gone. */
const DRAIN_AFTER_UPSTREAM_CLOSE_MS = 5_000;

/**
 * Joins client and server after login: raw bytes both ways with backpressure, nothing parsed.
 * The client leaving ends the server connection at once (RDS connection slots are precious); the server
 * leaving ends the client after what was already sent is flushed. Resolves when both are closed.
 */
export function relay(client: Socket | Duplex, upstream: Socket | Duplex): Promise<void> {
  return new Promise((resolve) => {
    let open = 2;
    const closed = () => {
      if (--open === 0) resolve();
    };
    client.once("close", () => {
      upstream.destroy();
      closed();
    });
    upstream.once("close", () => {
      if (!client.destroyed) {
        client.end();
        setTimeout(() => client.destroy(), DRAIN_AFTER_UPSTREAM_CLOSE_MS).unref();
      }
      closed();
    });
    // Errors end both sides; 'close' follows and does the bookkeeping.
    client.on("error", () => upstream.destroy());
    upstream.on("error", () => client.destroy());

    forward(client, upstream);
    forward(upstream, client);
  });
}

/**
 * How much a destination may hold before its source is paused. Above a socket's highWaterMark (16 KB on
 * Node 20) so that a whole network read's worth of TLS records (64 KB: eight of PostgreSQL's 8 KB records)
 * is batched into one write rather than the source stopping and restarting its reads mid-burst.
 */
export const RELAY_BATCH_LIMIT_BYTES = 64 * 1024;

/**
 * Moves bytes one way with backpressure, like pipe() but batching writes: the destination is corked at the
 * first chunk of an event-loop turn and uncorked in the turn's check phase (setImmediate), so chunks that
 * arrive in one turn leave in one writev. Not process.nextTick: Node drains the tick queue after every
 * chunk it hands to JS (a TLS socket emits each record of a network read in its own callback), so a
 * next-tick uncork flushes every record alone: 8 KB writes for a COPY TO. The source ending ends the
 * destination (end() flushes a corked destination first).
 */
function forward(from: Duplex, to: Duplex): void {
  let corked = false;
  const flush = () => {
    corked = false;
    to.uncork();
  };
  from.on("data", (chunk: Buffer) => {
    if (!corked) {
      corked = true;
      to.cork();
      setImmediate(flush);
    }
    // Pause only when write() said so (then 'drain' is due) and the destination holds more than a burst.
    if (!to.write(chunk) && to.writableLength > RELAY_BATCH_LIMIT_BYTES) from.pause();
  });
  to.on("drain", () => from.resume());
  from.once("end", () => to.end());
  // The login left both sides paused (explicitly, so a 'data' listener alone would not start the flow).
  from.resume();
}
