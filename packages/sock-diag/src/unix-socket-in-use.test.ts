import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { lstat, mkdtemp, rm } from "node:fs/promises";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { unixSocketInUse } from "./unix-socket-in-use.js";

// Real Unix sockets and real processes: the probe decides whether rdsd may unlink a socket file.

let dir: string;
const cleanups: Array<() => Promise<unknown> | void> = [];
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "rdsd-in-use-"));
});
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  await rm(dir, { recursive: true, force: true });
});

/** A child process that runs `script` with the socket path as argv[1] and prints "up" once listening. */
async function listenerProcess(path: string, script: string): Promise<ChildProcess> {
  const child = spawn(process.execPath, ["-e", script, path], { stdio: ["ignore", "pipe", "inherit"] });
  cleanups.push(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill("SIGKILL");
      await once(child, "exit");
    }
  });
  await once(child.stdout!, "data");
  return child;
}

/** Connects once: "connect", or the error code the connect failed with. */
function connectOutcome(path: string): Promise<{ socket: net.Socket; outcome: string }> {
  const socket = net.connect(path);
  cleanups.push(() => void socket.destroy());
  return new Promise((resolve) => {
    socket.once("connect", () => resolve({ socket, outcome: "connect" }));
    socket.once("error", (err: NodeJS.ErrnoException) => resolve({ socket, outcome: err.code ?? err.message }));
  });
}

describe("unixSocketInUse", () => {
  it("is true for a listening socket", async () => {
    const path = join(dir, "live.sock");
    const server = net.createServer((socket) => socket.on("error", () => {}).end());
    await new Promise<void>((resolve) => server.listen(path, resolve));
    cleanups.push(() => new Promise((resolve) => server.close(resolve)));
    expect(await unixSocketInUse(path)).toBe(true);
  });

  it("is false for a socket file left by a process that was killed (ECONNREFUSED)", async () => {
    const path = join(dir, "stale.sock");
    const child = await listenerProcess(path, `require("node:net").createServer().listen(process.argv[1], () => console.log("up"))`);
    child.kill("SIGKILL");
    await once(child, "exit");
    expect((await lstat(path)).isSocket()).toBe(true);
    expect((await connectOutcome(path)).outcome).toBe("ECONNREFUSED");
    expect(await unixSocketInUse(path)).toBe(false);
  });

  it("is false for a path that does not exist (ENOENT)", async () => {
    expect(await unixSocketInUse(join(dir, "missing.sock"))).toBe(false);
  });

  it("is true for a live listener whose accept backlog is full (connect fails with EAGAIN)", async () => {
    const path = join(dir, "busy.sock");
    // The child listens with backlog 1, then blocks its event loop for good: nothing is ever accepted, so the
    // kernel queues connects until the backlog is full and then refuses further ones with EAGAIN.
    await listenerProcess(
      path,
      `require("node:net").createServer().listen({ path: process.argv[1], backlog: 1 }, () => { console.log("up"); Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0); })`,
    );
    const outcomes: string[] = [];
    while (outcomes.length < 64 && !outcomes.includes("EAGAIN")) outcomes.push((await connectOutcome(path)).outcome);
    expect(outcomes.at(-1)).toBe("EAGAIN"); // the backlog really is full: the probe's own connect meets EAGAIN too
    expect(await unixSocketInUse(path)).toBe(true);
  });
});
