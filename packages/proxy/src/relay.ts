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
 * Moves bytes one way with backpressure, like pipe() but batching writes: chunks that arrive in one turn of
 * the event loop (a TLS socket hands over one record of at most 16 KB at a time, several per network read)
 * leave in one writev, since the destination is corked at the first chunk and uncorked once the turn's
 * callbacks are done. The source ending ends the destination.
 */
function forward(from: Duplex, to: Duplex): void {
  let corked = false;
  const uncork = () => {
    corked = false;
    to.uncork();
  };
  from.on("data", (chunk: Buffer) => {
    if (!corked) {
      corked = true;
      to.cork();
      process.nextTick(uncork);
    }
    if (!to.write(chunk)) from.pause();
  });
  to.on("drain", () => from.resume());
  from.once("end", () => to.end());
  // The login left both sides paused (explicitly, so a 'data' listener alone would not start the flow).
  from.resume();
}
