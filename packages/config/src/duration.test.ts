import { describe, expect, it } from "vitest";
import { parseDuration } from "./duration.js";

describe("parseDuration", () => {
  it.each([
    ["500ms", 500],
    ["30s", 30_000],
    ["10m", 600_000],
    ["1h", 3_600_000],
    ["1.5h", 5_400_000],
    ["90", 90_000],
    ["0.25", 250],
    [" 2m ", 120_000],
  ])("%s -> %i ms", (text, ms) => {
    expect(parseDuration(text)).toBe(ms);
  });

  it.each(["", "10 minutes", "-5s", "1d", "m", "1h30m", "1e3"])("refuses %j", (text) => {
    expect(() => parseDuration(text)).toThrow(/expected a duration such as "500ms", "30s", "10m", "1h" or a number of seconds/);
  });
});
