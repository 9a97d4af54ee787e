import { lstat } from "node:fs/promises";
import net from "node:net";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { crashedUnixListener, fullBacklogUnixListener, tempDir, type TempDir } from "@rdsd/testkit";
import { unixSocketInUse } from "./unix-socket-in-use.js";

// Real Unix sockets and real processes: the probe decides whether rdsd may unlink a socket file.

let dir: TempDir;
const cleanups: Array<() => Promise<unknown>> = [];
beforeEach(async () => {
  dir = await tempDir("rdsd-in-use-");
});
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  await dir.cleanup();
});

describe("unixSocketInUse", () => {
  it("is true for a listening socket", async () => {
    const path = join(dir.path, "live.sock");
    const server = net.createServer((socket) => socket.on("error", () => {}).end());
    await new Promise<void>((resolve) => server.listen(path, resolve));
    cleanups.push(() => new Promise((resolve) => server.close(resolve)));
    expect(await unixSocketInUse(path)).toBe(true);
  });

  it("is false for a socket file left by a process that was killed (ECONNREFUSED)", async () => {
    const path = join(dir.path, "stale.sock");
    await crashedUnixListener(path);
    expect((await lstat(path)).isSocket()).toBe(true);
    expect(await unixSocketInUse(path)).toBe(false);
  });

  it("is false for a path that does not exist (ENOENT)", async () => {
    expect(await unixSocketInUse(join(dir.path, "missing.sock"))).toBe(false);
  });

  it("is true for a live listener whose accept backlog is full (connect fails with EAGAIN)", async () => {
    const path = join(dir.path, "busy.sock");
    const busy = await fullBacklogUnixListener(path);
    cleanups.push(() => busy.close());
    expect(busy.outcomes.at(-1)).toBe("EAGAIN"); // the backlog really is full: the probe's own connect meets EAGAIN too
    expect(await unixSocketInUse(path)).toBe(true);
  });
});
