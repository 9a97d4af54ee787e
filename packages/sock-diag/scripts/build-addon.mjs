#!/usr/bin/env node
// Builds the sock_diag and sd_notify addons with node-gyp when `npm ci`/`npm install` runs this package's install script.
// Never fails the install: without Linux, a compiler, make, python3 or Node's headers there is simply no
// addon, and rdsd falls back to scanning /proc/net/tcp. `--strict` (npm run build:addon) fails instead,
// for someone who wants to see why.
//
// Offline by design: node-gyp is pointed at the headers installed beside this node (Debian's nodejs-dev
// puts them in /usr/include/node, the nodejs.org tarballs in <prefix>/include/node), so it never downloads.

import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const strict = process.argv.includes("--strict");
const packageDir = join(dirname(fileURLToPath(import.meta.url)), "..");
const BUILD_TIMEOUT_MS = 180_000;

function giveUp(reason) {
  const message = `@rdsd/sock-diag: native addons not built (${reason}); rdsd will use the slower /proc/net/tcp scan, and cannot tell systemd when it is ready (its unit then needs Type=simple)`;
  if (strict) {
    console.error(message);
    process.exit(1);
  }
  console.warn(message);
  process.exit(0);
}

/** node-gyp: the one npm hands its scripts, else npm's bundled copy beside this node, else PATH. */
function nodeGypCommand() {
  const fromNpm = process.env.npm_config_node_gyp;
  if (fromNpm && existsSync(fromNpm)) return [process.execPath, fromNpm];
  const bundled = join(dirname(process.execPath), "..", "lib", "node_modules", "npm", "node_modules", "node-gyp", "bin", "node-gyp.js");
  if (existsSync(bundled)) return [process.execPath, bundled];
  return ["node-gyp"];
}

/** A directory whose include/node holds this node's headers, or undefined (then node-gyp would download). */
function localNodeDir() {
  const configured = process.env.npm_config_nodedir;
  if (configured && existsSync(join(configured, "include", "node", "node_api.h"))) return configured;
  const prefix = join(dirname(process.execPath), "..");
  if (existsSync(join(prefix, "include", "node", "node_api.h"))) return prefix;
  return undefined;
}

if (process.platform !== "linux") giveUp(`sock_diag is Linux only, this is ${process.platform}`);
if (process.env.RDSD_SKIP_NATIVE === "1") giveUp("RDSD_SKIP_NATIVE=1");
const nodeDir = localNodeDir();
if (!nodeDir) giveUp(`Node's C headers are not beside ${process.execPath} (no include/node/node_api.h; nodejs.org and NodeSource builds ship them, Debian's own nodejs needs libnode-dev)`);

const [command, ...prefixArgs] = nodeGypCommand();
const result = spawnSync(command, [...prefixArgs, "rebuild", `--nodedir=${nodeDir}`], {
  cwd: packageDir,
  stdio: strict ? "inherit" : "pipe",
  encoding: "utf8",
  timeout: BUILD_TIMEOUT_MS,
});
if (result.error) giveUp(`cannot run node-gyp: ${result.error.message}`);
if (result.status !== 0) {
  const output = `${result.stdout ?? ""}${result.stderr ?? ""}`.trim().split("\n").slice(-15).join("\n");
  if (output) console.warn(output);
  giveUp(`node-gyp exited with ${result.status ?? result.signal}; a C compiler (gcc or clang, g++ for linking), make and python3 are needed`);
}
console.log("@rdsd/sock-diag: native addons built (build/Release/sock_diag.node, build/Release/sd_notify.node)");
