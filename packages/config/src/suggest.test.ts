import { describe, expect, it } from "vitest";
import { closestWord } from "./suggest.js";

describe("closestWord", () => {
  const keys = ["host", "port", "listen", "user", "database", "idleTimeout", "instanceId"];
  it.each([
    ["hots", "host"],
    ["prot", "port"],
    ["listn", "listen"],
    ["databse", "database"],
    ["idletimeout", "idleTimeout"],
    ["instance_id", "instanceId"],
  ])("suggests %s -> %s", (typo, known) => {
    expect(closestWord(typo, keys)).toBe(known);
  });

  it("suggests nothing for unrelated words", () => {
    expect(closestWord("credentials", keys)).toBeUndefined();
    expect(closestWord("x", keys)).toBeUndefined();
  });
});
