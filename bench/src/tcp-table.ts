import { readFile } from "node:fs/promises";
import { setTimeout as sleep } from "node:timers/promises";

/** TCP sockets the kernel lists in /proc/net/tcp and tcp6, and how many of them are in TIME_WAIT. */
export interface TcpTableSize {
  rows: number;
  timeWait: number;
}

const TIME_WAIT = "06";

/** Counts the rows of /proc/net/tcp{,6} (Linux; zero elsewhere). rdsd's local-user check scans these tables. */
export async function tcpTableSize(): Promise<TcpTableSize> {
  const size: TcpTableSize = { rows: 0, timeWait: 0 };
  for (const table of ["tcp", "tcp6"]) {
    let text: string;
    try {
      text = await readFile(`/proc/net/${table}`, "latin1");
    } catch {
      continue;
    }
    for (const line of text.split("\n").slice(1)) {
      const fields = line.trim().split(/\s+/);
      if (fields.length < 4) continue;
      size.rows++;
      if (fields[3] === TIME_WAIT) size.timeWait++;
    }
  }
  return size;
}

/**
 * Waits (at most `maxWaitMs`) until TIME_WAIT sockets left by earlier connection bursts are nearly gone (Linux
 * keeps them 60 s), so each path's pgbench -C run starts from a similar table. Returns the size last seen.
 */
export async function awaitFewTimeWait(maxWaitMs: number, threshold = 200): Promise<TcpTableSize> {
  const deadline = Date.now() + maxWaitMs;
  let size = await tcpTableSize();
  while (size.timeWait > threshold && Date.now() < deadline) {
    await sleep(1_000);
    size = await tcpTableSize();
  }
  return size;
}
