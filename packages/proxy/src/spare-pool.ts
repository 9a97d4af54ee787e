import type { Duplex } from "node:stream";
import type tls from "node:tls";
import type { Taken } from "./taken.js";

/** An upstream connection with SSLRequest and verify-full TLS done and nothing else sent. */
export interface SpareConnection {
  socket: tls.TLSSocket;
  /** The dialed stream under the TLS socket. */
  stream: Duplex;
  /** The first error of the dialed stream, if any (a tunnel ends its streams with its problem). */
  streamError(): Error | undefined;
  /** Tells the dialer whether the stream carries a client (see Dialer.markIdle). */
  markIdle(idle: boolean): void;
  /** Whether it may carry a new client now (see Dialer.usable). */
  usable(): boolean | Promise<boolean>;
}

export interface SparePoolOptions {
  /** How many to keep ready. */
  count: number;
  /**
   * A spare older than this is closed and replaced. PostgreSQL drops a connection that has not completed
   * its authentication within authentication_timeout (60 s by default): 45 s leaves a margin.
   */
  refreshMs: number;
  /** Opens one spare: dial, SSLRequest, verify-full TLS. Rejects when the way to the database fails. */
  open(): Promise<SpareConnection>;
  /** Whether spares are wanted now: while clients use the target (see TargetProxy), never over a single-use tunnel. */
  wanted(): boolean;
  /** After a failed open, the next waits this long, doubling up to maxBackoffMs. */
  backoffMs?: number;
  maxBackoffMs?: number;
  onEvent?(event: "ready" | "refreshed" | "failed", detail?: string): void;
}

interface Spare {
  connection: SpareConnection;
  timer: NodeJS.Timeout;
  unwatch: () => void;
  /** Out of the pool, watched until claimed; `lost` once the server closed it or sent anything meanwhile. */
  taken?: { lost: boolean };
}

/**
 * Keeps `count` upstream connections warm for the next cold login, so it costs the startup and password
 * round trips only. No credential ever goes near a spare: it is handed over before the startup message.
 * A spare that the server closes, or that sends anything, is replaced; one about to reach the server's
 * authentication_timeout is closed (TLS close_notify, which PostgreSQL does not log) and replaced.
 */
export class SparePool {
  private readonly ready: Spare[] = [];
  private opening = 0;
  private stopped = false;
  private backoff: number;
  private retryTimer: NodeJS.Timeout | undefined;
  /** Bumped by reset(): opens started before it are closed on arrival. */
  private generation = 0;

  constructor(private readonly options: SparePoolOptions) {
    this.backoff = options.backoffMs ?? 1_000;
  }

  get size(): number {
    return this.ready.length;
  }

  /**
   * A spare, taken out of the pool and watched until claimed (see Taken), or undefined. Not refilled here: the
   * caller calls fill() once its own login is done, so a new spare's dial never goes ahead of the client's (or
   * spends a one-connection session).
   */
  take(): Taken<SpareConnection> | undefined {
    const spare = this.ready.shift();
    if (!spare) return undefined;
    clearTimeout(spare.timer);
    spare.connection.markIdle(false);
    const taken = { lost: false };
    spare.taken = taken;
    return {
      connection: spare.connection,
      claim: () => {
        spare.unwatch();
        return !taken.lost;
      },
    };
  }

  /** Opens spares up to the count, if wanted. */
  fill(): void {
    if (this.stopped || this.retryTimer || !this.options.wanted()) return;
    while (this.ready.length + this.opening < this.options.count) void this.openOne();
  }

  /** Closes every spare (the way to the database changed); new ones are opened on the new way if wanted. */
  reset(): void {
    this.release();
    this.fill();
  }

  /**
   * Closes every spare and any being opened, and opens none until the next fill(): the target is no longer in
   * use, and an idle target must not dial its database.
   */
  release(): void {
    this.generation++;
    for (const spare of this.ready.splice(0)) this.close(spare);
    clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
  }

  /** Closes every spare for good. */
  stop(): void {
    this.stopped = true;
    this.reset();
  }

  /** Opens a spare; `replacing` is an old one to close once the new one is ready (so one is always there). */
  private async openOne(replacing?: Spare): Promise<void> {
    this.opening++;
    const generation = this.generation;
    let connection: SpareConnection;
    try {
      connection = await this.options.open();
    } catch (err) {
      this.opening--;
      if (replacing && this.remove(replacing)) this.close(replacing);
      this.options.onEvent?.("failed", (err as Error).message);
      if (generation !== this.generation || this.stopped) {
        // Opened for spares since released: the current ones (if still wanted) did not count on this one.
        this.fill();
        return;
      }
      // The way to the database is down: try again later, not in a loop.
      const wait = this.backoff;
      this.backoff = Math.min(this.backoff * 2, this.options.maxBackoffMs ?? 60_000);
      clearTimeout(this.retryTimer);
      this.retryTimer = setTimeout(() => {
        this.retryTimer = undefined;
        this.fill();
      }, wait).unref();
      return;
    }
    this.opening--;
    const replaced = replacing !== undefined && this.remove(replacing);
    if (replaced) this.close(replacing);
    if (generation !== this.generation || this.stopped || this.ready.length >= this.options.count) {
      closeQuietly(connection);
      // A fill() while this was opening counted it; if the pool is still wanted and short, open one now.
      this.fill();
      return;
    }
    this.backoff = this.options.backoffMs ?? 1_000;
    connection.markIdle(true);
    const spare: Spare = {
      connection,
      timer: setTimeout(() => this.expire(spare), this.options.refreshMs).unref(),
      unwatch: () => {},
    };
    spare.unwatch = this.watch(spare);
    this.ready.push(spare);
    this.options.onEvent?.(replaced ? "refreshed" : "ready");
  }

  /** Old enough to be near the server's authentication_timeout: replaced by a new one, closed once that is ready. */
  private expire(spare: Spare): void {
    if (!this.ready.includes(spare)) return;
    if (this.stopped || !this.options.wanted()) {
      this.remove(spare);
      this.close(spare);
      return;
    }
    void this.openOne(spare);
  }

  /** The server has nothing to say before a startup message: anything, or a close, ends the spare. */
  private watch(spare: Spare): () => void {
    const { socket } = spare.connection;
    const lost = () => {
      if (spare.taken) {
        // Taken while its carrier is checked: the claim fails, and the caller opens a connection of its own.
        spare.taken.lost = true;
        this.close(spare);
        return;
      }
      if (!this.remove(spare)) return;
      this.close(spare);
      this.fill();
    };
    socket.on("data", lost);
    socket.once("close", lost);
    return () => {
      socket.off("data", lost);
      socket.off("close", lost);
    };
  }

  private remove(spare: Spare): boolean {
    const at = this.ready.indexOf(spare);
    if (at < 0) return false;
    this.ready.splice(at, 1);
    return true;
  }

  private close(spare: Spare): void {
    clearTimeout(spare.timer);
    spare.unwatch();
    closeQuietly(spare.connection);
  }
}

/** Ends TLS with close_notify, so the server sees a client that left before its startup (not logged), then lets go. */
function closeQuietly(connection: SpareConnection): void {
  const { socket, stream } = connection;
  socket.once("close", () => stream.destroy());
  socket.end();
  setTimeout(() => socket.destroy(), 1_000).unref();
}
