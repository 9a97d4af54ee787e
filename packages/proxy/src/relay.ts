import type { Socket } from "node:net";
import type { Duplex } from "node:stream";

/** How long a client may take to read the last bytes after the server has gone. */
const DRAIN_AFTER_UPSTREAM_CLOSE_MS = 5_000;

/**
 * Joins client and server after login: raw bytes both ways with backpressure (stream.pipe), nothing parsed.
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

    client.pipe(upstream);
    upstream.pipe(client);
  });
}
