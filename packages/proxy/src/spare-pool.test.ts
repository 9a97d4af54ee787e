import { PassThrough } from "node:stream";
import type tls from "node:tls";
import { describe, expect, it } from "vitest";
import { SparePool, type SpareConnection } from "./spare-pool.js";

/** A stand-in connection: the pool only reads, ends and destroys it. */
function fakeConnection(): SpareConnection {
  const socket = new PassThrough() as unknown as tls.TLSSocket;
  return { socket, stream: new PassThrough(), streamError: () => undefined, markIdle: () => {}, usable: () => true };
}

/** open() calls the test settles one by one. */
function controlledOpens() {
  const pending: Array<{ resolve(c: SpareConnection): void; reject(e: Error): void }> = [];
  const opened: Array<() => void> = [];
  return {
    pending,
    open: () =>
      new Promise<SpareConnection>((resolve, reject) => {
        pending.push({ resolve, reject });
        opened.shift()?.();
      }),
    /** Resolves at the next open() call. */
    nextOpen: () => new Promise<void>((resolve) => opened.push(resolve)),
  };
}

describe("SparePool", () => {
  for (const outcome of ["succeeds", "fails"] as const) {
    it(`an open in flight when the pool is released does not hold back the next fill when it ${outcome}`, async () => {
      const opens = controlledOpens();
      const events: string[] = [];
      const pool = new SparePool({ count: 1, refreshMs: 60_000, open: opens.open, wanted: () => true, onEvent: (e) => events.push(e) });
      pool.fill();
      expect(opens.pending).toHaveLength(1);
      // Released (the target went unused) and wanted again (a client came) while the first open is in flight:
      // the fill counts that open, which belongs to the released generation.
      pool.release();
      pool.fill();
      expect(opens.pending).toHaveLength(1);
      const second = opens.nextOpen();
      if (outcome === "succeeds") opens.pending[0]!.resolve(fakeConnection());
      else opens.pending[0]!.reject(new Error("tunnel down"));
      // Arriving stale, it is dropped and a spare for the current generation is opened in its place.
      await second;
      expect(opens.pending).toHaveLength(2);
      opens.pending[1]!.resolve(fakeConnection());
      await new Promise((resolve) => setImmediate(resolve));
      expect(pool.size).toBe(1);
      expect(events.at(-1)).toBe("ready");
      pool.stop();
    });
  }

  it("a spare taken while its carrier is checked stays watched: the server's close or bytes meanwhile fail its claim", async () => {
    for (const serverDoes of ["nothing", "sends a byte", "closes"] as const) {
      const spare = fakeConnection();
      const pool = new SparePool({ count: 1, refreshMs: 60_000, open: async () => spare, wanted: () => true });
      pool.fill();
      await new Promise((resolve) => setImmediate(resolve));
      expect(pool.size).toBe(1);
      const taken = pool.take()!;
      expect(taken.connection).toBe(spare);
      if (serverDoes === "sends a byte") spare.socket.write("N");
      if (serverDoes === "closes") spare.socket.destroy();
      await new Promise((resolve) => setImmediate(resolve));
      expect(taken.claim(), serverDoes).toBe(serverDoes === "nothing");
      if (serverDoes === "nothing") {
        // Claimed: the pool no longer listens, the new owner does.
        expect(spare.socket.listenerCount("data")).toBe(0);
        expect(spare.socket.destroyed).toBe(false);
      }
      pool.stop();
    }
  });
});
