import { describe, expect, it } from "vitest";
import { diffConfigs, parseConfig } from "./index.js";

function config(aws: string, ...targets: string[]) {
  return parseConfig(`${aws}targets:\n${targets.join("")}`, "/etc/rdsd/config.yaml", { home: "/home/u" });
}

function target(name: string, listen: number, extra = ""): string {
  return `  ${name}:\n    host: ${name}.example.com\n    listen: ${listen}\n    user: u\n    tunnel: { driver: direct }\n${extra}`;
}

describe("diffConfigs", () => {
  it("sorts targets into added, removed, changed and unchanged", () => {
    const before = config("", target("keep", 7001), target("edit", 7002), target("drop", 7003));
    const after = config("", target("keep", 7001), target("edit", 7002, "    database: other\n"), target("new", 7004));
    expect(diffConfigs(before, after)).toEqual({ added: ["new"], removed: ["drop"], changed: ["edit"], unchanged: ["keep"], awsChanged: false });
  });

  it("compares resolved settings: a change in defaults changes the targets that inherit it", () => {
    const before = config("defaults: { clientTls: true }\n", target("a", 7001), target("b", 7002, "    clientTls: false\n"));
    const after = config("defaults: { clientTls: false }\n", target("a", 7001), target("b", 7002, "    clientTls: false\n"));
    expect(diffConfigs(before, after)).toMatchObject({ changed: ["a"], unchanged: ["b"] });
  });

  it("treats equal settings written differently as unchanged", () => {
    const before = config("", target("a", 7001));
    const after = config("defaults: { port: 5432 }\n", `  a: { host: a.example.com, listen: "7001", user: u, tunnel: { driver: direct, mode: eager } }\n`);
    expect(diffConfigs(before, after)).toMatchObject({ changed: [], unchanged: ["a"] });
  });

  it("marks every kept target changed when the aws section changes", () => {
    const before = config("aws: { profile: dev }\n", target("a", 7001), target("b", 7002));
    const after = config("aws: { profile: prod }\n", target("a", 7001), target("c", 7003));
    expect(diffConfigs(before, after)).toEqual({ added: ["c"], removed: ["b"], changed: ["a"], unchanged: [], awsChanged: true });
  });
});
