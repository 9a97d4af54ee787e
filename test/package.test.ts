import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runCommand, tempDir, type TempDir } from "@rdsd/testkit";

// `npm run package` for real: the tarball it writes, unpacked and read. (CI also installs it globally into a
// temporary prefix and runs it from /: see .ci/run.)

const REPO = fileURLToPath(new URL("..", import.meta.url));
const readJson = (path: string) => JSON.parse(readFileSync(path, "utf8")) as Record<string, unknown> & { dependencies?: Record<string, string> };
const lock = readJson(join(REPO, "package-lock.json")) as { packages: Record<string, { version?: string }> };
const cli = readJson(join(REPO, "packages/cli/package.json")) as { version: string; dependencies: Record<string, string> };

let dir: TempDir;
let unpacked: string;

beforeAll(async () => {
  dir = await tempDir("rdsd-package-");
  // CI has just run `npm run package` from this same tree (.ci/run) and names the tarball; otherwise pack one.
  let tarball = process.env.RDSD_PACKAGE_TARBALL;
  if (!tarball) {
    const made = await runCommand(process.execPath, [join(REPO, "scripts/package.mjs"), "--out", dir.path], { cwd: REPO, timeoutMs: 300_000 });
    expect(made.code, made.stderr).toBe(0);
    tarball = join(dir.path, `rdsd-${cli.version}.tgz`);
  }
  unpacked = join(dir.path, "unpacked");
  mkdirSync(unpacked);
  execFileSync("tar", ["-xzf", tarball, "-C", unpacked]);
  unpacked = join(unpacked, "package");
}, 360_000);
afterAll(async () => dir?.cleanup());

/** Every package.json in the unpacked tree, with its path inside the package. */
function manifests(root: string, prefix = ""): Array<{ path: string; manifest: ReturnType<typeof readJson> }> {
  const found: Array<{ path: string; manifest: ReturnType<typeof readJson> }> = [];
  const modules = join(root, "node_modules");
  if (!existsSync(modules)) return found;
  for (const entry of readdirSync(modules)) {
    const names = entry.startsWith("@") ? readdirSync(join(modules, entry)).map((n) => `${entry}/${n}`) : [entry];
    for (const name of names) {
      const packageDir = join(modules, name);
      if (!existsSync(join(packageDir, "package.json"))) continue;
      const path = `${prefix}node_modules/${name}`;
      found.push({ path, manifest: readJson(join(packageDir, "package.json")) }, ...manifests(packageDir, `${path}/`));
    }
  }
  return found;
}

function filesUnder(root: string): string[] {
  return readdirSync(root, { recursive: true, encoding: "utf8" }).map((f) => join(root, f)).filter((f) => statSync(f).isFile());
}

describe("npm run package", () => {
  it("bundles every workspace package the CLI needs, with exact versions and no workspace links", () => {
    const top = readJson(join(unpacked, "package.json")) as { name: string; version: string; bin: Record<string, string>; dependencies: Record<string, string>; bundleDependencies: string[] };
    expect(top).toMatchObject({ name: "rdsd", version: cli.version, bin: { rdsd: "bin/rdsd.js", "rdsd-emulator": "node_modules/@rdsd/ssm-emulator/bin/rdsd-emulator.js" } });
    for (const path of Object.values(top.bin)) expect(existsSync(join(unpacked, path)), path).toBe(true);
    const inside = manifests(unpacked);
    const workspaces = inside.filter((m) => String(m.manifest.name).startsWith("@rdsd/"));
    // The CLI's own @rdsd dependencies and, through them, the rest (iam, proxy, ssm-protocol, ...): each bundled.
    for (const name of Object.keys(cli.dependencies).filter((n) => n.startsWith("@rdsd/"))) expect(top.bundleDependencies, name).toContain(name);
    for (const { path, manifest } of workspaces) {
      expect(top.bundleDependencies, path).toContain(manifest.name);
      for (const dep of Object.keys(manifest.dependencies ?? {}).filter((n) => n.startsWith("@rdsd/"))) {
        expect(workspaces.map((w) => w.manifest.name), `${path} needs ${dep}`).toContain(dep);
      }
    }
    expect(workspaces.map((w) => w.manifest.name)).not.toContain("@rdsd/testkit");
    for (const { path, manifest } of [{ path: "package.json", manifest: top as unknown as ReturnType<typeof readJson> }, ...inside]) {
      for (const [dep, spec] of Object.entries({ ...manifest.dependencies, ...(manifest.optionalDependencies as Record<string, string> | undefined) })) {
        expect(spec, `${path}: ${dep}`).not.toMatch(/^(file|link|workspace|git|https?):/);
        if (dep.startsWith("@rdsd/") || path === "package.json") expect(spec, `${path}: ${dep}`).toMatch(/^\d+\.\d+\.\d+(-[\w.]+)?$/);
      }
    }
  });

  it("holds third-party packages at exactly the lockfile's versions", () => {
    const thirdParty = manifests(unpacked).filter((m) => !String(m.manifest.name).startsWith("@rdsd/"));
    expect(thirdParty.map((m) => m.manifest.name)).toEqual(expect.arrayContaining(["yaml", "winston", "node-ipc", "@aws-sdk/client-ssm", "ws", "commander"]));
    for (const { path, manifest } of thirdParty) expect(manifest.version, path).toBe(lock.packages[path]?.version);
    // node-ipc stays on the release before its maintainer's sabotage (README, "The control socket").
    expect(thirdParty.find((m) => m.manifest.name === "node-ipc")?.manifest.version).toBe("9.2.1");
  });

  it("carries what runs without the checkout: the demo config, the addon's sources, and no path into this clone", () => {
    expect(existsSync(join(unpacked, "config/demo.yaml"))).toBe(true);
    for (const file of ["native/sock_diag.c", "native/sd_notify.c", "binding.gyp", "scripts/build-addon.mjs"]) {
      expect(existsSync(join(unpacked, "node_modules/@rdsd/sock-diag", file)), file).toBe(true);
    }
    expect(existsSync(join(unpacked, "node_modules/@rdsd/sock-diag/build"))).toBe(false);
    const mentioningClone = filesUnder(unpacked).filter((f) => /\.(m?js|json|yaml)$/.test(f) && readFileSync(f, "utf8").includes(REPO.replace(/\/$/, "")));
    expect(mentioningClone).toEqual([]);
  });
});
