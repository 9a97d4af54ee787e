import { readFile } from "node:fs/promises";
import { setTimeout as sleep } from "node:timers/promises";

const WINDOW_MS = 1_000;

/** Share of all cores busy (not idle, not iowait) over one window, from /proc/stat. */
async function busyShare(): Promise<number> {
  const read = async () => {
    const fields = (await readFile("/proc/stat", "utf8")).split("\n")[0]!.trim().split(/\s+/).slice(1).map(Number);
    const idle = (fields[3] ?? 0) + (fields[4] ?? 0);
    const total = fields.reduce((a, b) => a + b, 0);
    return { idle, total };
  };
  const a = await read();
  await sleep(WINDOW_MS);
  const b = await read();
  const total = b.total - a.total;
  return total > 0 ? 1 - (b.idle - a.idle) / total : 0;
}

/**
 * Waits (at most `maxWaitMs`) until the machine is nearly idle before a measurement, since other work on a
 * two-core machine moves every figure. Returns the busy share last seen, recorded with the results.
 */
export async function awaitQuietMachine(maxWaitMs: number, threshold = 0.15): Promise<number> {
  const deadline = Date.now() + maxWaitMs;
  let busy = await busyShare();
  while (busy > threshold && Date.now() < deadline) busy = await busyShare();
  return busy;
}
