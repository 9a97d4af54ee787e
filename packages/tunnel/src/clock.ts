/** Time as the tunnel code sees it: injectable so supervisors and channels can be driven by tests. */
export interface Clock {
  /** Epoch milliseconds. */
  now(): number;
  setTimeout(callback: () => void, ms: number): TimerHandle;
  clearTimeout(handle: TimerHandle | undefined): void;
}

/** An opaque timer handle. */
export interface TimerHandle {
  readonly __timer: unique symbol;
}

/** The real clock; timers are unref'd so an idle tunnel never keeps the process alive on its own. */
export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout(callback, ms) {
    const t = setTimeout(callback, ms);
    t.unref();
    return t as unknown as TimerHandle;
  },
  clearTimeout(handle) {
    if (handle !== undefined) clearTimeout(handle as unknown as NodeJS.Timeout);
  },
};

/** A clock that moves only when told to: `advance` fires due timers in time order. */
export class ManualClock implements Clock {
  private current: number;
  private nextId = 0;
  private readonly timers = new Map<number, { at: number; callback: () => void }>();

  constructor(start = 1_700_000_000_000) {
    this.current = start;
  }

  now(): number {
    return this.current;
  }

  setTimeout(callback: () => void, ms: number): TimerHandle {
    const id = ++this.nextId;
    this.timers.set(id, { at: this.current + Math.max(0, ms), callback });
    return id as unknown as TimerHandle;
  }

  clearTimeout(handle: TimerHandle | undefined): void {
    if (handle !== undefined) this.timers.delete(handle as unknown as number);
  }

  /** Pending timers. */
  get pending(): number {
    return this.timers.size;
  }

  /** Moves time forward by `ms`, firing every timer that falls due, in order (timers they set included). */
  advance(ms: number): void {
    const end = this.current + ms;
    for (;;) {
      let dueId: number | undefined;
      let dueAt = Infinity;
      for (const [id, t] of this.timers) {
        if (t.at <= end && t.at < dueAt) {
          dueAt = t.at;
          dueId = id;
        }
      }
      if (dueId === undefined) break;
      const timer = this.timers.get(dueId)!;
      this.timers.delete(dueId);
      this.current = Math.max(this.current, timer.at);
      timer.callback();
    }
    this.current = end;
  }

  /**
   * The machine slept for `ms`: wall time moves on and no timer fires, now or because of it (Node's timers run on a
   * monotonic clock that stops during suspend, so each comes due `ms` later by the wall clock).
   */
  sleep(ms: number): void {
    this.current += ms;
    for (const timer of this.timers.values()) timer.at += ms;
  }

  /** Moves wall time forward without firing timers first (a laptop waking from sleep), then fires what is due. */
  jump(ms: number): void {
    this.current += ms;
    this.advance(0);
  }
}
