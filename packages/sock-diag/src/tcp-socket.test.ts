import { execFileSync, spawn } from "node:child_process";
import { once } from "node:events";
import { existsSync, readFileSync } from "node:fs";
import net from "node:net";
import { endianness } from "node:os";
import { Worker } from "node:worker_threads";
import { afterEach, describe, expect, it } from "vitest";
import { ADDON_PATH, loadSockDiag } from "./addon.js";
import { ipLiteralBytes } from "./ip-literal.js";
import { sockDiagAvailable, tcpSocketInfo, tcpSocketOwner, type Endpoint } from "./tcp-socket.js";

// Real sockets on this machine. Without the built addon these tests skip, saying why in their name,
// unless RDSD_REQUIRE_NATIVE=1 (CI), where they run and fail.
const status = sockDiagAvailable();
const required = process.env.RDSD_REQUIRE_NATIVE === "1";
const runNative = status.ok || required;
const skipNote = status.ok ? "" : ` (skipped: ${status.reason})`;
const asRoot = process.platform === "linux" && process.getuid?.() === 0;
const canSwitchUser = asRoot && ["/usr/bin/setpriv", "/bin/setpriv"].some((path) => existsSync(path));

const TCP_ESTABLISHED = 1;
const TCP_TIME_WAIT = 6;
const TCP_LISTEN = 10;

const cleanups: Array<() => void> = [];
afterEach(() => {
  for (const cleanup of cleanups.splice(0)) cleanup();
});

async function listen(host: string): Promise<net.Server> {
  const server = net.createServer();
  server.listen(0, host);
  await once(server, "listening");
  cleanups.push(() => server.close());
  return server;
}

/** A loopback connection in this process: the client socket and the server's accepted socket. */
async function connectPair(host: string, server?: net.Server): Promise<{ client: net.Socket; accepted: net.Socket; clientEnd: Endpoint; listenerEnd: Endpoint }> {
  const listener = server ?? (await listen(host));
  const accepted = once(listener, "connection") as Promise<[net.Socket]>;
  const client = net.connect((listener.address() as net.AddressInfo).port, host);
  await once(client, "connect");
  const [socket] = await accepted;
  cleanups.push(() => {
    client.destroy();
    socket.destroy();
  });
  return {
    client,
    accepted: socket,
    clientEnd: { address: client.localAddress!, port: client.localPort! },
    listenerEnd: { address: client.remoteAddress!, port: client.remotePort! },
  };
}

/** The row of /proc/net/tcp{,6} for the socket local -> remote, read independently of the addon. */
function procRow(table: "tcp" | "tcp6", local: Endpoint, remote: Endpoint): { state: number; uid: number; inode: number } | undefined {
  const text = (endpoint: Endpoint) => {
    const literal = ipLiteralBytes(endpoint.address)!;
    const bytes = table === "tcp6" && literal.family === 4 ? Uint8Array.from([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, ...literal.bytes]) : literal.bytes;
    let hex = "";
    for (let word = 0; word < bytes.length; word += 4) {
      const group = [...bytes.slice(word, word + 4)];
      if (endianness() === "LE") group.reverse();
      hex += Buffer.from(group).toString("hex").toUpperCase();
    }
    return `${hex}:${endpoint.port.toString(16).toUpperCase().padStart(4, "0")}`;
  };
  const needle = ` ${text(local)} ${text(remote)} `;
  const line = readFileSync(`/proc/net/${table}`, "latin1").split("\n").find((row) => row.includes(needle));
  if (!line) return undefined;
  // After the addresses: st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode
  const rest = line.slice(line.indexOf(needle) + needle.length).trim().split(/\s+/);
  return { state: parseInt(rest[0]!, 16), uid: Number(rest[4]), inode: Number(rest[6]) };
}

describe.skipIf(!runNative)(`tcpSocketInfo on this machine${skipNote}`, () => {
  it("passes its self-test: the kernel finds a listener by its exact tuple through the addon", () => {
    expect(sockDiagAvailable()).toEqual({ ok: true });
  });

  it.each(["127.0.0.1", "::1"])("finds the client socket of a loopback connection on %s: this process's uid, the same socket /proc lists", async (host) => {
    const { clientEnd, listenerEnd } = await connectPair(host);
    const info = tcpSocketInfo(clientEnd, listenerEnd);
    expect(info).toEqual({ uid: process.geteuid!(), state: TCP_ESTABLISHED, inode: expect.any(Number) });
    expect(tcpSocketOwner(clientEnd, listenerEnd)).toBe(process.geteuid!());
    const row = procRow(host === "::1" ? "tcp6" : "tcp", clientEnd, listenerEnd);
    expect(row).toEqual({ state: TCP_ESTABLISHED, uid: info!.uid, inode: info!.inode });
    expect(info!.inode).toBeGreaterThan(0);
  });

  it("tells the two ends apart: the reversed tuple is the server's accepted socket, another inode", async () => {
    const { clientEnd, listenerEnd } = await connectPair("127.0.0.1");
    const client = tcpSocketInfo(clientEnd, listenerEnd)!;
    const accepted = tcpSocketInfo(listenerEnd, clientEnd)!;
    expect(accepted.inode).not.toBe(client.inode);
    expect(accepted.inode).toBe(procRow("tcp", listenerEnd, clientEnd)!.inode);
  });

  it("answers only for the exact tuple: a listener's address with a wrong remote end is not found", async () => {
    const server = await listen("127.0.0.1");
    const listenerEnd = { address: "127.0.0.1", port: (server.address() as net.AddressInfo).port };
    // The kernel's exact lookup falls back to the listener hash and answers with the listener...
    expect(tcpSocketInfo(listenerEnd, { address: "0.0.0.0", port: 0 })).toMatchObject({ state: TCP_LISTEN, uid: process.geteuid!() });
    // ...also when asked for a connection that does not exist; the addon must not take that answer.
    expect(tcpSocketInfo(listenerEnd, { address: "127.0.0.1", port: 1 })).toBeUndefined();
    expect(tcpSocketOwner(listenerEnd, { address: "127.0.0.1", port: 1 })).toBeUndefined();
  });

  it("does not find a connection that never existed, or a port nobody uses", async () => {
    const server = await listen("127.0.0.1");
    const port = (server.address() as net.AddressInfo).port;
    await new Promise<void>((resolve) => server.close(() => resolve()));
    expect(tcpSocketOwner({ address: "127.0.0.1", port }, { address: "127.0.0.1", port: 1 })).toBeUndefined();
    expect(tcpSocketOwner({ address: "::1", port }, { address: "::1", port: 1 })).toBeUndefined();
  });

  it("treats a closed connection in TIME_WAIT as not found (the kernel reports it with uid 0 and no owner)", async () => {
    const { client, accepted, clientEnd, listenerEnd } = await connectPair("127.0.0.1");
    // The client closes first, so its end is the one left in TIME_WAIT.
    accepted.on("end", () => accepted.end());
    client.end();
    await once(client, "close");
    expect(procRow("tcp", clientEnd, listenerEnd)).toMatchObject({ state: TCP_TIME_WAIT, uid: 0 });
    expect(tcpSocketInfo(clientEnd, listenerEnd)).toBeUndefined();
  });

  it("finds a dual-stack client (an AF_INET6 socket on ::ffff:127.0.0.1) by its IPv4 tuple, which /proc/net/tcp does not list", async () => {
    const server = await listen("127.0.0.1");
    const accepted = once(server, "connection") as Promise<[net.Socket]>;
    const client = net.connect({ host: "::ffff:127.0.0.1", port: (server.address() as net.AddressInfo).port, family: 6 });
    await once(client, "connect");
    const [socket] = await accepted;
    cleanups.push(() => {
      client.destroy();
      socket.destroy();
    });
    // The server sees a plain IPv4 peer; the client's socket lives in the IPv6 table.
    const clientEnd = { address: socket.remoteAddress!, port: socket.remotePort! };
    const listenerEnd = { address: socket.localAddress!, port: socket.localPort! };
    expect(clientEnd.address).toBe("127.0.0.1");
    expect(procRow("tcp", clientEnd, listenerEnd)).toBeUndefined();
    const row = procRow("tcp6", clientEnd, listenerEnd);
    expect(tcpSocketInfo(clientEnd, listenerEnd)).toEqual({ uid: process.geteuid!(), state: TCP_ESTABLISHED, inode: row!.inode });
    expect(tcpSocketOwner({ address: "::ffff:127.0.0.1", port: clientEnd.port }, { address: "::ffff:127.0.0.1", port: listenerEnd.port })).toBe(process.geteuid!());
  });

  it.skipIf(!canSwitchUser)(`reads another user's uid: a client run as nobody${canSwitchUser ? "" : " (skipped: needs root and setpriv)"}`, async () => {
    const nobody = Number(execFileSync("id", ["-u", "nobody"], { encoding: "utf8" }).trim());
    const server = await listen("127.0.0.1");
    const accepted = once(server, "connection") as Promise<[net.Socket]>;
    // The child connects, then holds the connection open until its stdin closes.
    const script = `const s = require("node:net").connect(Number(process.argv[1]), "127.0.0.1"); process.stdin.on("end", () => s.destroy()).resume();`;
    const child = spawn("setpriv", ["--reuid=nobody", "--regid=nogroup", "--clear-groups", process.execPath, "-e", script, String((server.address() as net.AddressInfo).port)], { stdio: ["pipe", "ignore", "inherit"] });
    cleanups.push(() => child.kill());
    const [socket] = await accepted;
    cleanups.push(() => socket.destroy());
    const clientEnd = { address: socket.remoteAddress!, port: socket.remotePort! };
    const listenerEnd = { address: socket.localAddress!, port: socket.localPort! };
    expect(tcpSocketOwner(clientEnd, listenerEnd)).toBe(nobody);
    expect(procRow("tcp", clientEnd, listenerEnd)!.uid).toBe(nobody);
    expect(tcpSocketOwner(listenerEnd, clientEnd)).toBe(process.geteuid!());
    child.stdin.end();
    await once(child, "exit");
  });

  it("throws TypeError for endpoints that are not IP literals and ports", () => {
    const ok = { address: "127.0.0.1", port: 1 };
    expect(() => tcpSocketOwner({ address: "localhost", port: 1 }, ok)).toThrow(TypeError);
    expect(() => tcpSocketOwner(ok, { address: "", port: 1 })).toThrow(/remote address must be an IPv4 or IPv6 literal/);
    for (const port of [-1, 65536, 1.5, Number.NaN, "80" as unknown as number]) {
      expect(() => tcpSocketOwner({ address: "127.0.0.1", port }, ok)).toThrow(/local port must be an integer from 0 to 65535/);
    }
    expect(() => tcpSocketOwner({ address: "::1", port: 1 }, ok)).toThrow(/not the same address family/);
    expect(() => tcpSocketOwner(null as unknown as Endpoint, ok)).toThrow(TypeError);
  });

  it("the addon itself refuses bad arguments with TypeError", () => {
    const state = loadSockDiag();
    if (!state.ok) throw new Error(state.reason);
    const lookup = state.addon.lookup as (...args: unknown[]) => unknown;
    const four = new Uint8Array(4);
    expect(() => lookup()).toThrow(/takes 5 arguments/);
    expect(() => lookup(5, four, 1, four, 1)).toThrow(/family must be 4 or 6/);
    expect(() => lookup("4", four, 1, four, 1)).toThrow(TypeError);
    expect(() => lookup(4, new Uint8Array(16), 1, four, 1)).toThrow(/local address must be a Uint8Array of 4 bytes/);
    expect(() => lookup(6, four, 1, new Uint8Array(16), 1)).toThrow(/local address must be a Uint8Array of 16 bytes/);
    expect(() => lookup(4, new Uint16Array(2), 1, four, 1)).toThrow(TypeError);
    expect(() => lookup(4, [127, 0, 0, 1], 1, four, 1)).toThrow(TypeError);
    for (const port of [-1, 65536, 0.5, Number.NaN, Infinity, "1"]) {
      expect(() => lookup(4, four, 1, four, port), String(port)).toThrow(/remote port must be an integer from 0 to 65535/);
    }
  });

  it("reports a kernel-side failure as an Error with the errno (here EMFILE: no file descriptor left for the netlink socket)", () => {
    // A child with a small descriptor limit uses them all up, then asks.
    const script = `
      const fs = require("node:fs");
      const addon = require(process.argv[1]);
      try { for (;;) fs.openSync("/dev/null", "r"); } catch {}
      try { addon.lookup(4, new Uint8Array([127, 0, 0, 1]), 1, new Uint8Array([127, 0, 0, 1]), 2); console.log("no error"); }
      catch (e) { console.log(JSON.stringify({ name: e.name, code: e.code, errno: e.errno, message: e.message })); }`;
    const output = execFileSync("sh", ["-c", 'ulimit -n 64 && exec "$0" -e "$1" "$2"', process.execPath, script, ADDON_PATH], { encoding: "utf8" });
    expect(JSON.parse(output.trim())).toEqual({ name: "Error", code: "EMFILE", errno: 24, message: "sock_diag socket(AF_NETLINK, NETLINK_SOCK_DIAG): Too many open files" });
  });

  it("loads and answers in a worker thread (the addon is context-aware and keeps no state)", async () => {
    const { clientEnd, listenerEnd } = await connectPair("127.0.0.1");
    const worker = new Worker(
      `const { parentPort, workerData } = require("node:worker_threads");
       const addon = require(workerData.path);
       const bytes = (a) => Uint8Array.from(a.split(".").map(Number));
       parentPort.postMessage(addon.lookup(4, bytes(workerData.local.address), workerData.local.port, bytes(workerData.remote.address), workerData.remote.port));`,
      { eval: true, workerData: { path: ADDON_PATH, local: clientEnd, remote: listenerEnd } },
    );
    const [answer] = await once(worker, "message");
    await once(worker, "exit");
    expect(answer).toEqual(tcpSocketInfo(clientEnd, listenerEnd));
  });
});

describe.runIf(!status.ok && !required)("without the addon", () => {
  it(`says why it is unavailable (${status.ok ? "" : status.reason}) and lookups throw SockDiagUnavailableError`, () => {
    expect(status.ok).toBe(false);
    expect(() => tcpSocketOwner({ address: "127.0.0.1", port: 1 }, { address: "127.0.0.1", port: 2 })).toThrow(/netlink sock_diag unavailable/);
  });
});
