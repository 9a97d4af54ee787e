import { spawn } from "node:child_process";
import { once } from "node:events";
import { mkdir, mkdtemp, rm, stat, writeFile } from "node:fs/promises";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ControlError, DaemonAlreadyRunningError, DaemonNotRunningError } from "./errors.js";
import type { ControlHandlers, DaemonStatus } from "./messages.js";
import { parseControlRequest } from "./messages.js";
import { requestDaemon } from "./client.js";
import { serveControl, type ControlServer } from "./server.js";

let dir: string;
let socketPath: string;
const servers: ControlServer[] = [];

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "rdsd-ctl-"));
  socketPath = join(dir, "run", "rdsd.sock");
});
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()));
  await rm(dir, { recursive: true, force: true });
});

const status = (targets: string[]): DaemonStatus => ({
  protocol: 1, version: "t", pid: process.pid, configFile: "/c.yaml", startedAt: new Date(0).toISOString(), socket: socketPath,
  stateDir: dir, logFile: join(dir, "rdsd.log"), localCaPath: join(dir, "ca.pem"),
  targets: targets.map((name) => ({ name, listen: ["127.0.0.1:1"], socket: null, state: "ready", driver: "direct", host: "h", port: 5432, user: "u", profile: null, region: null, database: null, readOnly: false, parameters: {}, connections: 0, parked: 0, spares: 0, bytesFromClients: 0, bytesToClients: 0, sessionIds: [], since: new Date(0).toISOString(), tokenAgeSeconds: null, lastError: null, warnings: [] })),
});

function handlers(overrides: Partial<ControlHandlers> = {}): ControlHandlers {
  return {
    status: async ({ target }) => {
      if (target && target !== "orders") throw new ControlError("unknown-target", `no target named ${target}`, "see `rdsd status`");
      return status(["orders"]);
    },
    restart: async () => ({ restarted: [] }),
    reload: async () => ({ added: [], removed: [], changed: [], unchanged: [], failed: [] }),
    test: async ({ target }) => ({ target, ok: true, stages: [], warnings: [] }),
    stop: async () => ({ stopped: true }),
    ...overrides,
  };
}

async function serve(h = handlers()) {
  const server = await serveControl({ socketPath, handlers: h });
  servers.push(server);
  return server;
}

describe("control socket", () => {
  it("answers typed requests, on a 0600 socket in a 0700 directory", async () => {
    await serve();
    expect((await stat(join(dir, "run"))).mode & 0o777).toBe(0o700);
    expect((await stat(socketPath)).mode & 0o777).toBe(0o600);
    const result = await requestDaemon("status", {}, { socketPath });
    expect(result.targets.map((t) => t.name)).toEqual(["orders"]);
    await expect(requestDaemon("status", { target: "nope" }, { socketPath })).rejects.toMatchObject({ code: "unknown-target", message: "no target named nope" });
  });

  it("says the daemon is not running when there is no socket", async () => {
    await expect(requestDaemon("status", {}, { socketPath })).rejects.toBeInstanceOf(DaemonNotRunningError);
  });

  it("refuses a second server on a live socket and keeps the first one working", async () => {
    await serve();
    await expect(serveControl({ socketPath, handlers: handlers() })).rejects.toBeInstanceOf(DaemonAlreadyRunningError);
    expect((await requestDaemon("status", {}, { socketPath })).pid).toBe(process.pid);
  });

  it("replaces a stale socket left by a process that died", async () => {
    // A real crash: a child binds the socket and is killed with SIGKILL, so nothing removes it.
    const child = spawn(process.execPath, ["-e", `require("node:fs").mkdirSync(${JSON.stringify(join(dir, "run"))},{recursive:true,mode:0o700});require("node:net").createServer().listen(${JSON.stringify(socketPath)},()=>process.send("up"))`], { stdio: ["ignore", "ignore", "inherit", "ipc"] });
    await once(child, "message");
    child.kill("SIGKILL");
    await once(child, "exit");
    expect((await stat(socketPath)).isSocket()).toBe(true);
    await expect(requestDaemon("status", {}, { socketPath })).rejects.toBeInstanceOf(DaemonNotRunningError);
    await serve();
    expect((await requestDaemon("status", {}, { socketPath })).targets).toHaveLength(1);
  });

  it("refuses to replace something that is not a socket", async () => {
    await mkdir(join(dir, "run"), { mode: 0o700 });
    await writeFile(socketPath, "not a socket");
    await expect(serveControl({ socketPath, handlers: handlers() })).rejects.toThrow(/is not a socket/);
  });

  it("removes its socket on close, and the directory it made (no empty rdsd-<uid> left behind)", async () => {
    const server = await serve();
    await server.close();
    await expect(stat(socketPath)).rejects.toMatchObject({ code: "ENOENT" });
    await expect(stat(join(dir, "run"))).rejects.toMatchObject({ code: "ENOENT" });
  });

  it("leaves a directory it did not make", async () => {
    await mkdir(join(dir, "run"), { mode: 0o700 });
    await (await serve()).close();
    await expect(stat(socketPath)).rejects.toMatchObject({ code: "ENOENT" });
    expect((await stat(join(dir, "run"))).isDirectory()).toBe(true);
  });

  it("answers hostile or malformed requests with bad-request and keeps serving", async () => {
    await serve();
    const socket = net.connect(socketPath);
    await once(socket, "connect");
    let received = "";
    socket.on("data", (c: Buffer) => (received += c.toString()));
    socket.write('{"type":"request","data":{"id":7,"command":"rm -rf"}}\f');
    socket.write("\u0000\u0001garbage\f");
    socket.write('{"type":"request","data":{"id":8,"command":"status","params":{"target":"../etc"}}}\f');
    await expect.poll(() => received.split("\f").filter(Boolean).length, { timeout: 2000 }).toBe(2);
    const answers = received.split("\f").filter(Boolean).map((l) => JSON.parse(l) as { data: { id: number; ok: boolean; error: { code: string } } });
    expect(answers.map((a) => [a.data.id, a.data.ok, a.data.error.code])).toEqual([[7, false, "bad-request"], [8, false, "bad-request"]]);
    socket.destroy();
    expect((await requestDaemon("status", {}, { socketPath })).pid).toBe(process.pid);
  });
});

describe("parseControlRequest", () => {
  it("accepts the known commands and their parameters only", () => {
    expect(parseControlRequest({ id: 1, command: "test", params: { target: "orders-dev" } })).toEqual({ request: { id: 1, command: "test", params: { target: "orders-dev" } } });
    expect(parseControlRequest({ id: 2, command: "test", params: {} })).toEqual({ error: "test needs a target name", id: 2 });
    expect(parseControlRequest({ id: 3, command: "reload", params: { target: "x" } })).toEqual({ error: "reload takes no target", id: 3 });
    expect(parseControlRequest(null)).toEqual({ error: "a request must be an object", id: 0 });
    expect(parseControlRequest({ command: "status", params: [] })).toEqual({ error: "params must be an object", id: 0 });
  });
});
