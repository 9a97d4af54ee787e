import { once } from "node:events";
import { lstat, mkdir, mkdtemp, rm, stat, writeFile } from "node:fs/promises";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { crashedUnixListener, fullBacklogUnixListener } from "@rdsd/testkit";
import { listenUnix, removeSocketDirectory, type UnixSocketOptions } from "./unix-listener.js";

// Real Unix sockets and a real crashed process: what the daemon does with a target's socket path.

const cleanups: Array<() => Promise<unknown> | void> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function place(managed = true): Promise<UnixSocketOptions> {
  const base = await mkdtemp(join(tmpdir(), "rdsd-unix-"));
  cleanups.push(() => rm(base, { recursive: true, force: true }));
  const directory = join(base, "sockets", "orders-dev");
  return { directory, path: join(directory, ".s.PGSQL.6432"), managed };
}

function serve(options: UnixSocketOptions, shared = false): Promise<net.Server> {
  const server = net.createServer((socket) => {
    socket.on("error", () => {}); // the in-use probe connects and leaves at once
    socket.end("hello");
  });
  cleanups.push(() => new Promise((resolve) => server.close(resolve)));
  return listenUnix(server, options, shared, "orders-dev").then(() => server);
}

describe("listenUnix", () => {
  it("creates a private directory (0700) and a 0600 socket; 0755/0777 when other users are served", async () => {
    const options = await place();
    await serve(options);
    expect((await stat(options.directory)).mode & 0o777).toBe(0o700);
    expect((await stat(join(options.directory, ".."))).mode & 0o777).toBe(0o700);
    expect((await lstat(options.path)).mode & 0o777).toBe(0o600);
    const shared = await place();
    await serve(shared, true);
    expect((await stat(shared.directory)).mode & 0o777).toBe(0o755);
    expect((await lstat(shared.path)).mode & 0o777).toBe(0o777);
  });

  it("replaces the socket file a crashed process left, and serves on it", async () => {
    const options = await place();
    await serve(options).then((s) => new Promise((resolve) => s.close(resolve)));
    await crashedUnixListener(options.path);
    expect((await lstat(options.path)).isSocket()).toBe(true);
    await serve(options);
    const client = net.connect(options.path);
    const [greeting] = (await once(client, "data")) as [Buffer];
    expect(greeting.toString()).toBe("hello");
    client.destroy();
  });

  it("never steals a socket something still listens on, and refuses a path that is not a socket", async () => {
    const options = await place();
    await serve(options);
    await expect(serve(options)).rejects.toThrow(`target orders-dev: ${options.path} is in use by another program (another rdsd?)`);
    const other = await place(false);
    await serve(other).then((s) => new Promise((resolve) => s.close(resolve)));
    await writeFile(other.path, "not a socket");
    await expect(serve(other)).rejects.toThrow(`target orders-dev: ${other.path} exists and is not a socket`);
  });

  it("never steals the socket of a live listener whose accept backlog is full (its connect fails with EAGAIN)", async () => {
    const options = await place();
    await mkdir(options.directory, { recursive: true, mode: 0o700 });
    const busy = await fullBacklogUnixListener(options.path);
    cleanups.push(() => busy.close());
    expect(busy.outcomes.at(-1)).toBe("EAGAIN");
    const { ino } = await lstat(options.path);
    await expect(serve(options)).rejects.toThrow(`target orders-dev: ${options.path} is in use by another program (another rdsd?)`);
    expect((await lstat(options.path)).ino).toBe(ino); // still the other program's socket file, not unlinked
  });

  it("removes rdsd's own directory after the server closed, and leaves a chosen one", async () => {
    const managed = await place(true);
    const server = await serve(managed);
    await new Promise((resolve) => server.close(resolve));
    await removeSocketDirectory(managed);
    await expect(lstat(managed.directory)).rejects.toMatchObject({ code: "ENOENT" });
    const chosen = await place(false);
    const chosenServer = await serve(chosen);
    await new Promise((resolve) => chosenServer.close(resolve));
    await removeSocketDirectory(chosen);
    await expect(lstat(chosen.path)).rejects.toMatchObject({ code: "ENOENT" });
    expect((await stat(chosen.directory)).isDirectory()).toBe(true);
  });
});
