import { describe, expect, it } from "vitest";
import {
  agentSupportsKeepAliveOff,
  agentSupportsMultiplexing,
  clientSupportsKeepAliveOff,
  clientSupportsMultiplexing,
  compareVersions,
} from "./version.js";

describe("version rules", () => {
  it("compares numerically, not as text", () => {
    expect(compareVersions("3.0.1000.0", "3.0.196.0")).toBe(1);
    expect(compareVersions("1.2.0.0", "1.2.0.0")).toBe(0);
    expect(compareVersions("1.2", "1.2.0.0")).toBeUndefined();
    expect(compareVersions("1.x.0.0", "1.2.0.0")).toBeUndefined();
  });

  it("applies the client's rules about the agent", () => {
    expect(agentSupportsMultiplexing("3.0.196.0")).toBe(false);
    expect(agentSupportsMultiplexing("3.0.197.0")).toBe(true);
    expect(agentSupportsKeepAliveOff("3.1.1511.0")).toBe(false);
    expect(agentSupportsKeepAliveOff("3.3.1802.0")).toBe(true);
  });

  it("applies the agent's rules about the client", () => {
    expect(clientSupportsMultiplexing("1.1.69.0")).toBe(false);
    expect(clientSupportsMultiplexing("1.1.70.0")).toBe(true);
    expect(clientSupportsMultiplexing("1.2.0.0")).toBe(true);
    expect(clientSupportsKeepAliveOff("1.2.331.0")).toBe(false);
    expect(clientSupportsKeepAliveOff("1.2.0.0")).toBe(false);
    expect(clientSupportsKeepAliveOff("1.2.764.0")).toBe(true);
  });
});
