import { describe, expect, it } from "vitest";
import { parsePluginLine, useEnvForm } from "./plugin-driver.js";

describe("session-manager-plugin output", () => {
  it("recognises every line a supervisor acts on", () => {
    expect(parsePluginLine("Starting session with SessionId: rdsd-0a1b2c")).toEqual({ kind: "started", sessionId: "rdsd-0a1b2c" });
    expect(parsePluginLine("Port 50123 opened for sessionId rdsd-0a1b2c.")).toEqual({ kind: "port-opened", port: 50123, sessionId: "rdsd-0a1b2c" });
    expect(parsePluginLine("Waiting for connections...")).toEqual({ kind: "waiting" });
    expect(parsePluginLine("Connection to destination port failed, check SSM Agent logs.")).toEqual({ kind: "destination-failed" });
    expect(parsePluginLine("Exiting session with sessionId: rdsd-0a1b2c.")).toEqual({ kind: "exiting", sessionId: "rdsd-0a1b2c", reason: undefined });
    expect(parsePluginLine("SessionId: rdsd-0a1b2c : Your session timed out due to inactivity.")).toEqual({
      kind: "exiting",
      sessionId: "rdsd-0a1b2c",
      reason: "Your session timed out due to inactivity.",
    });
    expect(parsePluginLine("Cannot perform start session: EOF")).toEqual({ kind: "fatal", reason: "EOF" });
    expect(parsePluginLine("something else")).toEqual({ kind: "other", text: "something else" });
  });

  it("passes the StartSession response through an environment variable above 1.2.497.0, as the AWS CLI does", () => {
    expect(useEnvForm("1.2.707.0")).toBe(true);
    expect(useEnvForm("1.2.497.0")).toBe(false);
    expect(useEnvForm(undefined)).toBe(false);
  });
});
