import net from "node:net";
import { once } from "node:events";
import { describe, expect, it } from "vitest";
import { findSocketOwner, procNetAddress, socketOwnerUid } from "./socket-owner.js";

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

describe.runIf(process.platform === "linux")("socketOwnerUid on this machine", () => {
  it("reads this process's uid for its own connection, over IPv4 and IPv6", async () => {
    for (const host of ["127.0.0.1", "::1"]) {
      const server = net.createServer();
      server.listen(0, host);
      await once(server, "listening");
      const accepted = once(server, "connection");
      const client = net.connect((server.address() as net.AddressInfo).port, host);
      const [socket] = (await accepted) as [net.Socket];
      const uid = await socketOwnerUid({ address: socket.remoteAddress!, port: socket.remotePort! }, { address: socket.localAddress!, port: socket.localPort! });
      expect(uid).toBe(process.getuid!());
      client.destroy();
      socket.destroy();
      server.close();
    }
  });
});
