import type { Duplex } from "node:stream";
import { BackendMessages } from "@rdsd/pg-wire";
import type { Taken } from "./taken.js";

/** A logged-in server connection: serving a client, or parked between clients (reset, idle), with its state as the server last reported it. */
export interface ParkedConnection {
  socket: Duplex;
  /** The real backend's cancel key. */
  backendKey: { processId: number; secretKey: Buffer };
  /** The server's reportable settings, current (kept up to date while parked). */
  parameters: Map<string, string>;
  /** The server's NegotiateProtocolVersion from the login, if any. */
  negotiation: Buffer | undefined;
  /** What carries it, for a client's error when it drops ("the SSM tunnel"). */
  carrier: string;
  /** Why the connection's upstream stream ended, if it did (for telling its client). */
  streamError(): Error | undefined;
  /** Tells the dialer whether the connection carries a client (see Dialer.markIdle). */
  markIdle(idle: boolean): void;
  /** Whether it may carry a new client now (see Dialer.usable). */
  usable(): boolean | Promise<boolean>;
}

interface Entry {
  connection: ParkedConnection;
  timer: NodeJS.Timeout;
  /** Stops reading the connection; false when it was left half-way through a message (then it is closed). */
  stopWatching: () => boolean;
  /** Parking order. */
  sequence: number;
  /** Out of the pool, watched until claimed; `lost` once it ended or spoke out of turn meanwhile. */
  taken?: { lost: boolean };
}

const PARAMETER_STATUS = "S".charCodeAt(0);
const NOTICE = "N".charCodeAt(0);

/**
 * One target's parked server connections, keyed by the exact startup parameters they logged in with (a
 * client gets one only if a fresh login would have been the same). Newest first out; at most `maxIdle` in
 * all (the oldest is closed to make room); each closed after `idleTimeoutMs` unused. A parked connection
 * is read while it waits: a ParameterStatus updates it, a notice is dropped, anything else (the server's
 * FATAL, a close) discards it.
 */
export class IdlePool {
  private readonly byKey = new Map<string, Entry[]>();
  private count = 0;
  private parked = 0;

  constructor(private readonly options: { maxIdle: number; idleTimeoutMs: number }) {}

  get size(): number {
    return this.count;
  }

  /** How many may be parked at once (0: none, reuse is off in effect). */
  get capacity(): number {
    return this.options.maxIdle;
  }

  park(key: string, connection: ParkedConnection): void {
    if (this.options.maxIdle <= 0) {
      connection.socket.destroy();
      return;
    }
    while (this.count >= this.options.maxIdle) this.evictOldest();
    const entry: Entry = {
      connection,
      timer: setTimeout(() => this.discard(key, entry), this.options.idleTimeoutMs).unref(),
      stopWatching: () => true,
      sequence: this.parked++,
    };
    entry.stopWatching = this.watch(connection, () => (entry.taken ? this.loseTaken(entry) : this.discard(key, entry)));
    const list = this.byKey.get(key) ?? [];
    list.push(entry);
    this.byKey.set(key, list);
    this.count++;
  }

  /**
   * The most recently parked connection for `key`, taken out of the pool, or undefined. It stays watched until
   * claimed (a ParameterStatus still updates it; anything else, a close, or a message cut half-way fails the
   * claim); once claimed it is paused with nothing of the pool's listening.
   */
  take(key: string): Taken<ParkedConnection> | undefined {
    const list = this.byKey.get(key);
    const entry = list?.pop();
    if (!entry) return undefined;
    if (list!.length === 0) this.byKey.delete(key);
    this.count--;
    clearTimeout(entry.timer);
    const taken = { lost: false };
    entry.taken = taken;
    return { connection: entry.connection, claim: () => !taken.lost && entry.stopWatching() };
  }

  /** Closes every parked connection (restart, reload, stop). */
  closeAll(): void {
    for (const [key, list] of [...this.byKey]) for (const entry of [...list]) this.discard(key, entry);
  }

  private evictOldest(): void {
    let oldest: { key: string; entry: Entry } | undefined;
    // Each list is in parking order: the oldest overall is the first of one of them.
    for (const [key, list] of this.byKey) {
      const first = list[0]!;
      if (!oldest || first.sequence < oldest.entry.sequence) oldest = { key, entry: first };
    }
    if (oldest) this.discard(oldest.key, oldest.entry);
  }

  /** A taken connection that ended or spoke out of turn before it was claimed. */
  private loseTaken(entry: Entry): void {
    if (entry.taken!.lost) return;
    entry.taken!.lost = true;
    entry.stopWatching();
    entry.connection.socket.destroy();
  }

  private discard(key: string, entry: Entry): void {
    const list = this.byKey.get(key);
    const at = list?.indexOf(entry) ?? -1;
    if (at < 0) return;
    list!.splice(at, 1);
    if (list!.length === 0) this.byKey.delete(key);
    this.count--;
    clearTimeout(entry.timer);
    entry.stopWatching();
    entry.connection.socket.destroy();
  }

  /** Reads a parked connection; calls `lost` when it must not be handed out any more. */
  private watch(connection: ParkedConnection, lost: () => void): () => boolean {
    const { socket } = connection;
    const backend = new BackendMessages(connection.parameters);
    const onData = (chunk: Buffer) => {
      backend.feed(chunk);
      if (backend.broken !== undefined || (backend.lastType !== PARAMETER_STATUS && backend.lastType !== NOTICE)) lost();
    };
    const onClose = () => lost();
    socket.on("data", onData);
    socket.once("close", onClose);
    socket.resume();
    return () => {
      socket.off("data", onData);
      socket.off("close", onClose);
      socket.pause();
      // Half a ParameterStatus read: the next client could not follow the stream. Close it.
      if (backend.atBoundary) return true;
      socket.destroy();
      return false;
    };
  }
}
