import { describe, expect, it } from "vitest";
import { isHostname, isLoopback, LOOPBACK_ONLY, parseListen, splitHostPort } from "./addresses.js";

describe("parseListen", () => {
  it("expands a bare port to both loopbacks", () => {
    expect(parseListen(6432, LOOPBACK_ONLY)).toEqual({ addresses: [{ host: "127.0.0.1", port: 6432 }, { host: "::1", port: 6432 }] });
    expect(parseListen("6432", LOOPBACK_ONLY)).toEqual({ addresses: [{ host: "127.0.0.1", port: 6432 }, { host: "::1", port: 6432 }] });
  });

  it("takes one explicit loopback address, writing IPv6 loopback short", () => {
    expect(parseListen("127.0.0.1:6432", LOOPBACK_ONLY)).toEqual({ addresses: [{ host: "127.0.0.1", port: 6432 }] });
    expect(parseListen("127.1.2.3:6432", LOOPBACK_ONLY)).toEqual({ addresses: [{ host: "127.1.2.3", port: 6432 }] });
    expect(parseListen("[::1]:6432", LOOPBACK_ONLY)).toEqual({ addresses: [{ host: "::1", port: 6432 }] });
    expect(parseListen("[0:0:0:0:0:0:0:1]:6432", LOOPBACK_ONLY)).toEqual({ addresses: [{ host: "::1", port: 6432 }] });
  });

  it.each(["0.0.0.0:6432", "[::]:6432", "192.168.1.10:6432", "[fe80::1]:6432"])("refuses non-loopback %s", (value) => {
    expect(parseListen(value, LOOPBACK_ONLY)).toEqual({ error: expect.stringContaining("listeners bind to loopback only") as unknown });
  });

  it("lets a single policy flag allow other addresses", () => {
    expect(parseListen("0.0.0.0:6432", { allowNonLoopback: true })).toEqual({ addresses: [{ host: "0.0.0.0", port: 6432 }] });
  });

  it.each([0, 65536, 1.5, -1])("refuses port %d", (port) => {
    expect(parseListen(port, LOOPBACK_ONLY)).toEqual({ error: `expected a port 1-65535 or "ADDRESS:PORT" on loopback, got ${port}` });
  });

  it.each(["abc", "127.0.0.1:", ":6432", "127.0.0.1:0", "::1:6432", "127.0.0.1:99999", "[::1]6432"])("refuses %j", (value) => {
    expect(parseListen(value, LOOPBACK_ONLY)).toEqual({ error: `expected a port 1-65535 or "ADDRESS:PORT" on loopback, got ${JSON.stringify(value)}` });
  });
});

describe("address helpers", () => {
  it("knows loopback addresses", () => {
    expect(["127.0.0.1", "127.255.0.9", "::1", "0::1"].every(isLoopback)).toBe(true);
    expect(["128.0.0.1", "::", "10.0.0.1", "localhost", "::2"].some(isLoopback)).toBe(false);
  });

  it("splits host:port forms", () => {
    expect(splitHostPort("db.internal:5432")).toEqual({ host: "db.internal", port: 5432 });
    expect(splitHostPort("[fd00::5]:5432")).toEqual({ host: "fd00::5", port: 5432 });
    expect(splitHostPort("[db.internal]:5432")).toBeUndefined();
    expect(splitHostPort("db.internal")).toBeUndefined();
  });

  it("recognises hostnames", () => {
    expect(isHostname("orders-dev.abc123xyz.eu-west-2.rds.amazonaws.com")).toBe(true);
    expect(isHostname("localhost")).toBe(true);
    expect(isHostname("10.1.2.3")).toBe(true);
    expect(isHostname("fd00::5")).toBe(true);
    for (const bad of ["", "a..b", "-a.com", "a-.com", "a_b.com", "https://a.com", "a b", `${"x".repeat(64)}.com`]) {
      expect(isHostname(bad), bad).toBe(false);
    }
  });
});
