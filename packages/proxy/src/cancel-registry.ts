import { timingSafeEqual } from "node:crypto";

/** Forwards one cancel to the backend it belongs to (a new upstream connection). */
export type CancelForwarder = () => Promise<void>;

interface Entry {
  secretKey: Buffer;
  forward: CancelForwarder;
}

/**
 * Maps the (pid, key) pairs handed to clients to the upstream backend they came from, so a CancelRequest
 * arriving on a fresh client connection reaches the right server. Keys are compared in constant time;
 * unknown pairs are dropped silently, as PostgreSQL does.
 */
export class CancelRegistry {
  private readonly byPid = new Map<number, Entry[]>();

  /** Registers a live session's key; returns the function that unregisters it. */
  register(processId: number, secretKey: Buffer, forward: CancelForwarder): () => void {
    const entry: Entry = { secretKey, forward };
    const list = this.byPid.get(processId) ?? [];
    list.push(entry);
    this.byPid.set(processId, list);
    return () => {
      const current = this.byPid.get(processId);
      if (!current) return;
      const rest = current.filter((e) => e !== entry);
      if (rest.length === 0) this.byPid.delete(processId);
      else this.byPid.set(processId, rest);
    };
  }

  /** Finds the session for a cancel request; undefined when nothing matches. */
  lookup(processId: number, secretKey: Buffer): CancelForwarder | undefined {
    let found: CancelForwarder | undefined;
    for (const entry of this.byPid.get(processId) ?? []) {
      // Same-length check first: timingSafeEqual requires it, and key length is not secret.
      if (entry.secretKey.length === secretKey.length && timingSafeEqual(entry.secretKey, secretKey)) found = entry.forward;
    }
    return found;
  }

  get size(): number {
    let n = 0;
    for (const list of this.byPid.values()) n += list.length;
    return n;
  }
}
