import { mkdir, readFile, realpath, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { hasCommand, runCommand, tempDir, type TempDir } from "@rdsd/testkit";
import { loadSdNotify } from "@rdsd/sock-diag";
import { launchdPlist, systemdUnit } from "../packages/cli/src/service-units.js";

const RDSD = fileURLToPath(new URL("../packages/cli/bin/rdsd.js", import.meta.url));
const REPO = fileURLToPath(new URL("..", import.meta.url));
const hasSystemdAnalyze = hasCommand("systemd-analyze");
const hasPython = hasCommand("python3");

let dir: TempDir;
beforeAll(async () => {
  dir = await tempDir("rdsd-service-");
  await mkdir(join(dir.path, "xdg-runtime"), { mode: 0o700 });
  // install-service refuses a --config file that is not there.
  await mkdir(join(dir.path, "conf"));
  await writeFile(join(dir.path, "conf", "my rdsd.yaml"), "targets: {}\n");
  await writeFile(join(dir.path, "conf", "a&b <c>.yaml"), "targets: {}\n");
});
afterAll(async () => dir?.cleanup());

/** rdsd run from the temp dir, so a relative --config names a file there. */
function rdsd(args: string[], env: NodeJS.ProcessEnv = {}) {
  return runCommand(process.execPath, [RDSD, ...args], { cwd: dir.path, env: { ...process.env, HOME: join(dir.path, "home"), XDG_CONFIG_HOME: "", ...env } });
}

/** systemd's own checker, as a user unit. */
function verifyUnit(path: string) {
  return runCommand("systemd-analyze", ["verify", "--user", path], { env: { ...process.env, XDG_RUNTIME_DIR: join(dir.path, "xdg-runtime") } });
}

/** The plist through a real property-list parser (Python's plistlib). */
async function parsePlist(text: string): Promise<Record<string, unknown>> {
  const result = await runCommand("python3", ["-c", "import json,plistlib,sys; print(json.dumps(plistlib.loads(sys.stdin.buffer.read())))"], { input: text });
  expect(result.stderr).toBe("");
  return JSON.parse(result.stdout) as Record<string, unknown>;
}

describe("service units", () => {
  it("keeps the repository's unit and plist in sync with what install-service writes", async () => {
    const repositoryUnit = await readFile(join(REPO, "systemd/rdsd.service"), "utf8");
    expect(repositoryUnit).toBe(systemdUnit({ node: "/usr/bin/env", script: "rdsd" }));
    expect(repositoryUnit).toContain("\nType=notify\n");
    expect(await readFile(join(REPO, "launchd/dev.rdsd.daemon.plist"), "utf8")).toBe(launchdPlist({ node: "/usr/bin/env", script: "rdsd" }, "/tmp"));
  });

  it("install-service writes the systemd user unit with this machine's node and rdsd paths", async () => {
    const result = await rdsd(["install-service", "--platform", "linux", "--config", "conf/my rdsd.yaml"]);
    expect(result.code, result.stderr).toBe(0);
    const path = join(dir.path, "home", ".config", "systemd", "user", "rdsd.service");
    expect(result.stdout).toContain(`wrote ${path}`);
    const unit = await readFile(path, "utf8");
    const configPath = join(dir.path, "conf/my rdsd.yaml");
    expect(unit).toContain(`ExecStart=${process.execPath} ${await realpath(RDSD)} daemon --config "${configPath}"\n`);
    expect(unit).toContain("Restart=on-failure\n");
    // This install built the sd_notify addon, so the daemon can say READY=1: Type=notify.
    expect(unit).toContain(loadSdNotify().ok ? "\nType=notify\n" : "\nType=simple\n");
    const printed = await rdsd(["install-service", "--platform", "linux", "--print"]);
    expect(printed.stdout).toContain(`ExecStart=${process.execPath} ${await realpath(RDSD)} daemon\n`);
  });

  it("install-service expands ~ in --config and refuses a config file that is not there", async () => {
    const home = join(dir.path, "home");
    await mkdir(join(home, "conf"), { recursive: true });
    await writeFile(join(home, "conf", "x.yaml"), "targets: {}\n");
    // A quoted or `--config=~/...` argument reaches rdsd with the tilde; the unit must not keep it.
    const printed = await rdsd(["install-service", "--platform", "linux", "--print", "--config=~/conf/x.yaml"]);
    expect(printed.code, printed.stderr).toBe(0);
    expect(printed.stdout).toContain(` daemon --config ${join(home, "conf", "x.yaml")}\n`);

    const unitPath = join(home, ".config", "systemd", "user", "rdsd.service");
    const before = await readFile(unitPath, "utf8");
    const missing = await rdsd(["install-service", "--platform", "linux", "--config", "~/conf/missing.yaml"]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain(`no config file at ${join(home, "conf", "missing.yaml")}`);
    expect(missing.stdout).toBe("");
    // Nothing written: the unit from the earlier install is untouched.
    expect(await readFile(unitPath, "utf8")).toBe(before);
    const directory = await rdsd(["install-service", "--platform", "darwin", "--print", "--config", "~/conf"]);
    expect(directory.code).toBe(1);
    expect(directory.stderr).toContain("is not a file");
  });

  it("README says where each LaunchAgent plist logs", async () => {
    const readme = await readFile(join(REPO, "README.md"), "utf8");
    const repositoryCopy = await readFile(join(REPO, "launchd/dev.rdsd.daemon.plist"), "utf8");
    const logPaths = (text: string) => [...text.matchAll(/<key>Standard(?:Out|Error)Path<\/key>\s*<string>([^<]+)<\/string>/g)].map((m) => m[1]!);
    // install-service writes ~/Library/Logs/rdsd.{out,err}.log; the repository's copy cannot know the home.
    expect(logPaths(launchdPlist({ node: "/n", script: "/s" }, "/Users/me/Library/Logs"))).toEqual(["/Users/me/Library/Logs/rdsd.out.log", "/Users/me/Library/Logs/rdsd.err.log"]);
    expect(readme).toContain("`~/Library/Logs/rdsd.{out,err}.log`");
    const [out, err] = logPaths(repositoryCopy);
    expect(readme).toContain(`\`${out!.replace(/\.out\.log$/, ".{out,err}.log")}\``);
    expect(err).toBe(out!.replace(/\.out\.log$/, ".err.log"));
  });

  it.skipIf(!hasSystemdAnalyze)("passes systemd-analyze verify (repository copy and generated unit)", async () => {
    for (const path of [join(REPO, "systemd/rdsd.service"), join(dir.path, "home", ".config", "systemd", "user", "rdsd.service")]) {
      const result = await verifyUnit(path);
      expect(result.code, `${path}: ${result.stderr}`).toBe(0);
      expect(result.stderr).toBe("");
    }
    // The unit for an install without the addon.
    const simple = join(dir.path, "simple.service");
    await writeFile(simple, systemdUnit({ node: "/usr/bin/node", script: "/opt/rdsd/bin/rdsd.js" }, { notify: false }));
    expect(await readFile(simple, "utf8")).toContain("\nType=simple\n");
    expect((await verifyUnit(simple)).code).toBe(0);
    // The checker does catch a broken unit.
    const broken = join(dir.path, "broken.service");
    await writeFile(broken, systemdUnit({ node: "relative/node", script: "x" }));
    expect((await verifyUnit(broken)).code).not.toBe(0);
  });

  it.skipIf(!hasPython)("writes a LaunchAgent plist that parses with its required keys", async () => {
    for (const text of [
      await readFile(join(REPO, "launchd/dev.rdsd.daemon.plist"), "utf8"),
      (await rdsd(["install-service", "--platform", "darwin", "--print", "--config", "conf/a&b <c>.yaml"])).stdout,
    ]) {
      const plist = await parsePlist(text);
      expect(plist.Label).toBe("dev.rdsd.daemon");
      expect(plist.RunAtLoad).toBe(true);
      expect(plist.KeepAlive).toEqual({ SuccessfulExit: false });
      expect(String(plist.StandardOutPath)).toMatch(/^\/.+rdsd\.out\.log$/);
      expect(String(plist.StandardErrorPath)).toMatch(/^\/.+rdsd\.err\.log$/);
      const args = plist.ProgramArguments as string[];
      expect(args.slice(2, 3)).toEqual(["daemon"]);
    }
    const generated = await parsePlist((await rdsd(["install-service", "--platform", "darwin", "--print", "--config", "conf/a&b <c>.yaml"])).stdout);
    expect(generated.ProgramArguments).toEqual([process.execPath, await realpath(RDSD), "daemon", "--config", join(dir.path, "conf/a&b <c>.yaml")]);
    expect(generated.StandardOutPath).toBe(join(dir.path, "home", "Library", "Logs", "rdsd.out.log"));
  });
});
