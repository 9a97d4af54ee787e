import { spawn } from "node:child_process";
import { once } from "node:events";
import { existsSync } from "node:fs";
import net from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { sockDiagAvailable } from "@rdsd/sock-diag";
import { findSocketOwner, procNetAddress, procSocketOwnerUid, socketOwner, type Endpoint, type ExactOwnerLookup } from "./socket-owner.js";

// Rows as a little-endian Linux prints them: a listener on 127.0.0.1:5432, a client 127.0.0.1:40000 of uid 1000
// connected to it, the accepted side (uid 0, the server's), and an old TIME_WAIT row for another pair.
const TCP = [
  "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode",
  "   0: 0100007F:1538 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 36359 1 0000000000000000 100 0 0 10 0",
  "   1: 0100007F:9C40 0100007F:1538 01 00000000:00000000 00:00000000 00000000  1000        0 40001 1 0000000000000000 20 4 30 10 -1",
  "   2: 0100007F:1538 0100007F:9C40 01 00000000:00000000 00:00000000 00000000     0        0 40002 1 0000000000000000 20 4 30 10 -1",
  "   3: 0100007F:9C41 0100007F:1538 06 00000000:00000000 03:00001770 00000000     0        0 0 3 0000000000000000",
  "",
].join("\n");

const TCP6 = [
  "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode",
  "   0: 00000000000000000000000001000000:9C40 00000000000000000000000001000000:1538 01 00000000:00000000 00:00000000 00000000  1001        0 5 1 0000000000000000 20 4 30 10 -1",
  "",
].join("\n");

describe("procNetAddress", () => {
  it("prints IPv4 in host byte order and the port in hex", () => {
    expect(procNetAddress({ address: "127.0.0.1", port: 5432 }, true)).toEqual({ table: "tcp", text: "0100007F:1538" });
    expect(procNetAddress({ address: "127.0.0.1", port: 5432 }, false)).toEqual({ table: "tcp", text: "7F000001:1538" });
    expect(procNetAddress({ address: "127.1.2.3", port: 1 }, true)).toEqual({ table: "tcp", text: "0302017F:0001" });
  });

  it("treats an IPv4-mapped IPv6 address as IPv4 (a v4 client of a dual-stack listener)", () => {
    expect(procNetAddress({ address: "::ffff:127.0.0.1", port: 5432 }, true)).toEqual({ table: "tcp", text: "0100007F:1538" });
  });

  it("prints IPv6 as four host-order words", () => {
    expect(procNetAddress({ address: "::1", port: 40000 }, true)).toEqual({ table: "tcp6", text: "00000000000000000000000001000000:9C40" });
    expect(procNetAddress({ address: "fe80::1:2", port: 80 }, true)!.text).toBe("000080FE000000000000000002000100:0050");
    expect(procNetAddress({ address: "::1", port: 40000 }, false)!.text).toBe("00000000000000000000000000000001:9C40");
  });

  it("refuses what is not an IP literal", () => {
    expect(procNetAddress({ address: "localhost", port: 1 }, true)).toBeUndefined();
  });
});

describe("findSocketOwner", () => {
  it("finds the client's row (local = client, remote = listener), not the accepted side's", () => {
    expect(findSocketOwner(TCP, "0100007F:9C40", "0100007F:1538")).toBe(1000);
    expect(findSocketOwner(TCP, "0100007F:1538", "0100007F:9C40")).toBe(0);
    expect(findSocketOwner(TCP6, "00000000000000000000000001000000:9C40", "00000000000000000000000001000000:1538")).toBe(1001);
  });

  it("ignores TIME_WAIT rows and answers undefined when no live row matches", () => {
    expect(findSocketOwner(TCP, "0100007F:9C41", "0100007F:1538")).toBeUndefined();
    expect(findSocketOwner(TCP, "0100007F:9C42", "0100007F:1538")).toBeUndefined();
    expect(findSocketOwner("", "0100007F:9C42", "0100007F:1538")).toBeUndefined();
  });

  it("does not match a port that is only a prefix of another", () => {
    // 0100007F:9C4 must not match the row of 0100007F:9C40.
    expect(findSocketOwner(TCP, "0100007F:9C4", "0100007F:1538")).toBeUndefined();
  });
});

const linux = process.platform === "linux";
const sockDiag = sockDiagAvailable();
// Without the built addon the sock_diag tests skip, saying why, unless RDSD_REQUIRE_NATIVE=1 (CI): then they fail.
const runSockDiag = linux && (sockDiag.ok || process.env.RDSD_REQUIRE_NATIVE === "1");
const sockDiagNote = sockDiag.ok ? "" : ` (skipped: ${sockDiag.reason})`;
const canSwitchUser = linux && process.getuid?.() === 0 && ["/usr/bin/setpriv", "/bin/setpriv"].some((path) => existsSync(path));

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

/** Accepts one connection made by `connect`; the ends as the proxy sees them (client = the peer). */
async function acceptOne(server: net.Server, connect: (port: number) => void): Promise<{ accepted: net.Socket; client: Endpoint; listener: Endpoint }> {
  const accepted = once(server, "connection") as Promise<[net.Socket]>;
  connect((server.address() as net.AddressInfo).port);
  const [socket] = await accepted;
  cleanups.push(() => socket.destroy());
  return { accepted: socket, client: { address: socket.remoteAddress!, port: socket.remotePort! }, listener: { address: socket.localAddress!, port: socket.localPort! } };
}

async function loopbackConnection(server: net.Server, host: string) {
  let client: net.Socket | undefined;
  const pair = await acceptOne(server, (port) => {
    client = net.connect(port, host);
    cleanups.push(() => client!.destroy());
  });
  return { ...pair, socket: client! };
}

describe.runIf(linux)("procSocketOwnerUid on this machine", () => {
  it("reads this process's uid for its own connection, over IPv4 and IPv6", async () => {
    for (const host of ["127.0.0.1", "::1"]) {
      const { client, listener } = await loopbackConnection(await listen(host), host);
      expect(await procSocketOwnerUid(client, listener)).toBe(process.getuid!());
    }
  });
});

describe.skipIf(!runSockDiag)(`socketOwner through sock_diag${sockDiagNote}`, () => {
  it("answers through sock_diag for connections over IPv4 and IPv6", async () => {
    for (const host of ["127.0.0.1", "::1"]) {
      const { client, listener } = await loopbackConnection(await listen(host), host);
      expect(await socketOwner(client, listener)).toEqual({ uid: process.geteuid!(), method: "sock_diag" });
    }
  });

  it("agrees with the /proc scan on live connections, closed ones (TIME_WAIT) and tuples that never existed", async () => {
    const cases: Array<{ client: Endpoint; listener: Endpoint }> = [];
    for (const host of ["127.0.0.1", "::1"]) {
      const server = await listen(host);
      for (let i = 0; i < 8; i++) cases.push(await loopbackConnection(server, host));
      // Closed by the client first: its end stays in TIME_WAIT, which has no owner.
      for (let i = 0; i < 4; i++) {
        const { socket, accepted, client, listener } = await loopbackConnection(server, host);
        accepted.on("end", () => accepted.end());
        socket.end();
        await once(socket, "close");
        cases.push({ client, listener });
      }
      const port = (server.address() as net.AddressInfo).port;
      cases.push({ client: { address: host, port }, listener: { address: host, port: 1 } });
    }
    const answers = [];
    for (const { client, listener } of cases) {
      const viaKernel = await socketOwner(client, listener);
      expect(viaKernel.method).toBe("sock_diag");
      answers.push({ sockDiag: viaKernel.uid, proc: await procSocketOwnerUid(client, listener) });
    }
    expect(answers.map((a) => a.sockDiag)).toEqual(answers.map((a) => a.proc));
    const own = process.geteuid!();
    expect(answers.filter((a) => a.sockDiag === own)).toHaveLength(16);
    expect(answers.filter((a) => a.sockDiag === undefined)).toHaveLength(10);
  });

  it.skipIf(!canSwitchUser)(`agrees with the /proc scan on another user's connection: nobody's uid${canSwitchUser ? "" : " (skipped: needs root and setpriv)"}`, async () => {
    const server = await listen("127.0.0.1");
    let child: ReturnType<typeof spawn> | undefined;
    const { client, listener } = await acceptOne(server, (port) => {
      const script = `const s = require("node:net").connect(${port}, "127.0.0.1"); process.stdin.on("end", () => s.destroy()).resume();`;
      child = spawn("setpriv", ["--reuid=nobody", "--regid=nogroup", "--clear-groups", process.execPath, "-e", script], { stdio: ["pipe", "ignore", "inherit"] });
      cleanups.push(() => child!.kill());
    });
    const owner = await socketOwner(client, listener);
    expect(owner).toEqual({ uid: 65534, method: "sock_diag" });
    expect(await procSocketOwnerUid(client, listener)).toBe(65534);
    child!.stdin!.end();
    await once(child!, "exit");
  });
});

describe.runIf(linux)("socketOwner's fallback to /proc", () => {
  it("uses the /proc scan when sock_diag is unavailable, and gives the reason only the first time", async () => {
    const unavailable: ExactOwnerLookup = { ok: false, reason: "addon not built (test 1)" };
    const { client, listener } = await loopbackConnection(await listen("127.0.0.1"), "127.0.0.1");
    const first = await socketOwner(client, listener, { exact: unavailable });
    expect(first).toEqual({ uid: process.geteuid!(), method: "proc", fallbackNotice: expect.stringContaining("addon not built (test 1)") });
    expect(first.fallbackNotice).toContain("/proc/net/tcp");
    expect(await socketOwner(client, listener, { exact: unavailable })).toEqual({ uid: process.geteuid!(), method: "proc" });
  });

  it("uses the /proc scan for a connection whose sock_diag lookup throws, reporting each distinct failure once", async () => {
    let calls = 0;
    const failing: ExactOwnerLookup = {
      ok: true,
      owner: () => {
        calls++;
        throw Object.assign(new Error("sock_diag sendto: Operation not permitted (test 2)"), { code: "EPERM" });
      },
    };
    const { client, listener } = await loopbackConnection(await listen("::1"), "::1");
    const first = await socketOwner(client, listener, { exact: failing });
    expect(first).toEqual({ uid: process.geteuid!(), method: "proc", fallbackNotice: expect.stringContaining("Operation not permitted (test 2)") });
    expect(await socketOwner(client, listener, { exact: failing })).toEqual({ uid: process.geteuid!(), method: "proc" });
    // sock_diag is still asked every time: a passing failure must not disable it for good.
    expect(calls).toBe(2);
  });

  it("trusts sock_diag's 'no such socket' without scanning /proc", async () => {
    const nobodyThere: ExactOwnerLookup = { ok: true, owner: () => undefined };
    const read = () => Promise.reject(new Error("the /proc tables must not be read"));
    expect(await socketOwner({ address: "127.0.0.1", port: 40000 }, { address: "127.0.0.1", port: 5432 }, { exact: nobodyThere, read })).toEqual({ uid: undefined, method: "sock_diag" });
  });

  it("answers 'nobody' for ends that are not IP literals of one family, whichever lookup", async () => {
    const asked: ExactOwnerLookup = { ok: true, owner: () => 0 };
    const read = async () => TCP;
    for (const exact of [asked, { ok: false, reason: "test 3" } as const]) {
      expect((await socketOwner({ address: "", port: 0 }, { address: "127.0.0.1", port: 5432 }, { exact, read })).uid).toBeUndefined();
      expect((await socketOwner({ address: "::1", port: 40000 }, { address: "127.0.0.1", port: 5432 }, { exact, read })).uid).toBeUndefined();
    }
  });
});
