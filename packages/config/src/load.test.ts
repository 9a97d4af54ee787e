import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ConfigError, loadConfig, parseConfig, resolveConfigPath } from "./index.js";

const repoConfigDir = fileURLToPath(new URL("../../../config/", import.meta.url));

describe("resolveConfigPath", () => {
  const home = "/home/u";
  it("prefers --config, then $RDSD_CONFIG, then $XDG_CONFIG_HOME, then ~/.config", () => {
    const env = { RDSD_CONFIG: "/etc/rdsd.yaml", XDG_CONFIG_HOME: "/xdg" };
    expect(resolveConfigPath({ flag: "/flag.yaml", env, home })).toBe("/flag.yaml");
    expect(resolveConfigPath({ env, home })).toBe("/etc/rdsd.yaml");
    expect(resolveConfigPath({ env: { XDG_CONFIG_HOME: "/xdg" }, home })).toBe("/xdg/rdsd/config.yaml");
    expect(resolveConfigPath({ env: {}, home })).toBe("/home/u/.config/rdsd/config.yaml");
  });

  it("treats empty values as unset and ignores a relative XDG_CONFIG_HOME", () => {
    expect(resolveConfigPath({ flag: "", env: { RDSD_CONFIG: "", XDG_CONFIG_HOME: "relative/dir" }, home })).toBe("/home/u/.config/rdsd/config.yaml");
  });

  it("expands ~ and makes relative paths absolute", () => {
    expect(resolveConfigPath({ env: { RDSD_CONFIG: "~/rdsd.yaml" }, home })).toBe("/home/u/rdsd.yaml");
    expect(resolveConfigPath({ flag: "conf/rdsd.yaml", env: {}, home })).toBe(path.resolve("conf/rdsd.yaml"));
  });
});

describe("loadConfig", () => {
  let dir = "";
  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), "rdsd-config-"));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("loads a file and anchors relative paths at its directory", async () => {
    const file = path.join(dir, "config.yaml");
    await writeFile(file, "targets:\n  a:\n    host: db.example.com\n    listen: 7001\n    user: u\n    tls: { ca: certs/ca.pem }\n    tunnel: { driver: direct }\n");
    const config = await loadConfig(file, { home: "/home/u" });
    expect(config.file).toBe(file);
    expect(config.targets[0]?.tls.ca).toBe(path.join(dir, "certs/ca.pem"));
  });

  it("explains a missing file and how to start", async () => {
    const file = path.join(dir, "nope", "config.yaml");
    const error = await loadConfig(file).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).message).toBe(
      `${file}: no config file here. To start, copy config/example.yaml from the rdsd sources to ${file} and edit it, or name another file with --config FILE or $RDSD_CONFIG`,
    );
  });

  it("reports an unreadable path (a directory) with the path", async () => {
    const error = await loadConfig(dir).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).message).toMatch(new RegExp(`^${dir}: cannot read the config file: .*EISDIR`));
  });

  it("loads config/example.yaml cleanly", async () => {
    const config = await loadConfig(path.join(repoConfigDir, "example.yaml"), { home: "/home/u" });
    expect(config.aws).toEqual({ profile: "dev-sso", region: "eu-west-2" });
    expect(config.targets.map((t) => [t.name, t.tunnel.driver, t.tunnel.mode])).toEqual([
      ["orders-dev", "native", "eager"],
      ["billing-dev", "native", "lazy"],
      ["legacy-reports", "plugin", "eager"],
    ]);
    expect(config.targets.every((t) => t.bastion !== undefined)).toBe(true);
  });

  it("loads the demo config (packages/cli/config/demo.yaml) cleanly: two native targets on 6432 and 6433", async () => {
    const demoConfig = fileURLToPath(new URL("../../cli/config/demo.yaml", import.meta.url));
    const config = await loadConfig(demoConfig, { home: "/home/u" });
    expect(config.targets.map((t) => [t.name, t.listen[0]?.port, t.tunnel.driver])).toEqual([
      ["orders-dev", 6432, "native"],
      ["billing-dev", 6433, "native"],
    ]);
    expect(config.targets.every((t) => t.host.endsWith(".rds.amazonaws.com"))).toBe(true);
    expect(config.targets[0]?.tls.ca).toBe(path.join(path.dirname(demoConfig), "demo-ca.pem"));
  });
});

describe("config/README.md", () => {
  it("has a complete example that loads", async () => {
    const readme = await readFile(path.join(repoConfigDir, "README.md"), "utf8");
    const example = /## A complete example\n\n```yaml\n([\s\S]*?)```/.exec(readme)?.[1];
    expect(example).toBeDefined();
    const config = parseConfig(example ?? "", path.join(repoConfigDir, "config.yaml"), { home: "/home/u" });
    expect(config.targets.map((t) => t.name)).toEqual(["orders-dev", "billing-dev", "local-pg"]);
    expect(config.targets[2]?.tunnel.address).toEqual({ host: "127.0.0.1", port: 5432 });
  });
});
