import { execFileSync, spawn } from "node:child_process";
import { once } from "node:events";
import { chmod, mkdtemp, rm } from "node:fs/promises";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { loadSockDiag } from "./addon.js";
import { peerCredentialsAvailable, unixPeerCredentials } from "./peer-credentials.js";

// Real Unix sockets. Without the built addon these tests skip, saying why, unless RDSD_REQUIRE_NATIVE=1 (CI).
const status = peerCredentialsAvailable();
const runNative = status.ok || process.env.RDSD_REQUIRE_NATIVE === "1";
const skipNote = status.ok ? "" : ` (skipped: ${status.reason})`;
const asRoot = process.platform === "linux" && process.getuid?.() === 0;

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function unixServer(): Promise<{ server: net.Server; path: string }> {
  const dir = await mkdtemp(join(tmpdir(), "rdsd-peer-"));
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  const path = join(dir, "s.sock");
  const server = net.createServer();
  server.listen(path);
  await once(server, "listening");
  cleanups.push(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return { server, path };
}

describe.runIf(runNative)(`peer credentials of a Unix-socket connection${skipNote}`, () => {
  it("are this process's uid, gid and pid for a client in this process", async () => {
    const { server, path } = await unixServer();
    const accepted = once(server, "connection") as Promise<[net.Socket]>;
    const client = net.connect(path);
    cleanups.push(() => void client.destroy());
    const [socket] = await accepted;
    cleanups.push(() => void socket.destroy());
    expect(unixPeerCredentials(socket)).toEqual({ uid: process.geteuid!(), gid: process.getegid!(), pid: process.pid });
  });

  it.runIf(asRoot)("are nobody's for a client run as nobody (root only: setpriv)", async () => {
    const nobody = Number(execFileSync("id", ["-u", "nobody"], { encoding: "utf8" }).trim());
    const { server, path } = await unixServer();
    await chmod(join(path, ".."), 0o755);
    await chmod(path, 0o777);
    const accepted = once(server, "connection") as Promise<[net.Socket]>;
    const script = `const s = require("node:net").connect(process.argv[1]); process.stdin.on("end", () => s.destroy()).resume();`;
    const child = spawn("setpriv", ["--reuid=nobody", "--regid=nogroup", "--clear-groups", process.execPath, "-e", script, path], { stdio: ["pipe", "ignore", "inherit"] });
    cleanups.push(() => void child.kill());
    const [socket] = await accepted;
    cleanups.push(() => void socket.destroy());
    const credentials = unixPeerCredentials(socket);
    expect(credentials.uid).toBe(nobody);
    expect(credentials.pid).toBe(child.pid);
  });

  it("throws for a closed socket and for bad descriptors (EBADF with its code)", async () => {
    const { server, path } = await unixServer();
    const accepted = once(server, "connection") as Promise<[net.Socket]>;
    const client = net.connect(path);
    const [socket] = await accepted;
    socket.destroy();
    client.destroy();
    expect(() => unixPeerCredentials(socket)).toThrow(/no file descriptor/);
    const addon = loadSockDiag();
    if (!addon.ok) throw new Error(addon.reason);
    expect(() => addon.addon.peerCredentials(-1)).toThrow(TypeError);
    expect(() => addon.addon.peerCredentials(999_999)).toThrow(expect.objectContaining({ code: "EBADF" }));
  });
});
