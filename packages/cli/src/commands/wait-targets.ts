import { setTimeout as delay } from "node:timers/promises";
import type { DaemonStatus, TargetStatus } from "@rdsd/control";
import { ask } from "../daemon-client.js";

const POLL_MS = 250;

export interface WaitOutcome {
  status: DaemonStatus;
  /** Eager targets that are not ready: failed, or still connecting when the time ran out. */
  notReady: TargetStatus[];
  timedOut: boolean;
}

/**
 * Asks the daemon until every eager target is ready. A lazy target waits idle for its first client and
 * counts as settled; a `failed` one (its setup or its listener failed: no retry will fix it) ends the wait
 * at once; one still connecting or reconnecting is waited for until `timeoutMs`.
 */
export async function waitForTargets(timeoutMs: number): Promise<WaitOutcome> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const status = await ask("status", {});
    const notReady = status.targets.filter((t) => t.state !== "ready" && t.state !== "idle");
    const timedOut = Date.now() >= deadline;
    if (notReady.length === 0 || timedOut || notReady.every((t) => t.state === "failed")) return { status, notReady, timedOut: timedOut && notReady.length > 0 };
    await delay(Math.min(POLL_MS, Math.max(0, deadline - Date.now())));
  }
}
