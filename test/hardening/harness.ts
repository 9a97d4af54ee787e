// The hardening suite's world: a real PostgreSQL with RDS-like TLS, the SSM emulator in this process (so
// its sessions can be inspected and faulted), and a real `rdsd daemon` process whose every output is kept
// for the secret grep at the end of each file.

import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { chmod, readdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { DaemonStatus } from "@rdsd/control";
import { decodeErrorFields, readBackendFrame } from "@rdsd/pg-wire";
import { startEmulator, type Emulator, type EmulatorOptions } from "@rdsd/ssm-emulator";
import { emulatorDaemonEnv } from "../emulator-env.js";
import { makeRdsLikeTls, runCommand, startPostgres, tempDir, type CommandResult, type PostgresServer, type RdsLikeTls, type TempDir } from "@rdsd/testkit";

// The suite's files take /proc helpers from here with the rest of their world.
export { childrenOf } from "@rdsd/testkit";

export const RDSD = fileURLToPath(new URL("../../packages/cli/bin/rdsd.js", import.meta.url));
export const HOST = "orders-dev.abc123xyz.eu-west-2.rds.amazonaws.com";
export const BASTION = "i-0a1b2c3d4e5f60718";
/** The database password the daemon logs in with: it must never show up anywhere. */
export const DB_PASSWORD = "hardening-db-password-7f3a9c1e5b";

export interface World {
  pg: PostgresServer;
  rds: RdsLikeTls;
  dir: TempDir;
  emulator: Emulator;
  env: NodeJS.ProcessEnv;
  configPath: string;
  /** Everything the suite saw: daemon stderr, CLI output, client error messages. Grepped for secrets. */
  produced: string[];
  close(): Promise<void>;
}

export interface WorldOptions {
  emulator?: Partial<EmulatorOptions>;
  /** Extra settings for PostgreSQL (-c name=value). */
  pgSettings?: Record<string, string>;
}

export async function startWorld(options: WorldOptions = {}): Promise<World> {
  const rds = await makeRdsLikeTls(HOST);
  const pg = await startPostgres({
    tls: { certPem: rds.certPem, keyPem: rds.keyPem },
    hba: ["hostssl all app 127.0.0.1/32 scram-sha-256", "hostnossl all all 127.0.0.1/32 reject"],
    maxConnections: 1200,
    ...(options.pgSettings ? { settings: options.pgSettings } : {}),
  });
  await pg.admin(`CREATE ROLE app LOGIN PASSWORD '${DB_PASSWORD}'`);
  const emulator = await startEmulator({
    instances: [{ instanceId: BASTION, tags: { Name: "db-bastion" } }],
    hostMap: [`${HOST}:5432=127.0.0.1:${pg.port}`],
    pacing: false,
    ...options.emulator,
  });
  const dir = await tempDir("rdsd-hardening-");
  // Traversable by other users, so only rdsd's own modes stand between them and its files.
  await chmod(dir.path, 0o755);
  const env = emulatorDaemonEnv(dir.path, emulator, {
    appPassword: DB_PASSWORD,
    awsConfigFile: join(dir.path, "aws-config"),
    awsCredentialsFile: join(dir.path, "aws-credentials"),
  });
  return {
    pg,
    rds,
    dir,
    emulator,
    env,
    configPath: join(dir.path, "rdsd.yaml"),
    produced: [],
    async close() {
      await emulator.close();
      await pg.stop();
      await rds.cleanup();
      await dir.cleanup();
    },
  };
}

/** One target's YAML lines (indented under `targets:`). */
export function targetYaml(name: string, port: number, extra: string[] = [], driver: "native" | "direct" = "native", pgPort?: number): string {
  const lines = [
    `  ${name}:`,
    `    host: ${HOST}`,
    `    listen: "127.0.0.1:${port}"`,
    `    user: app`,
    `    database: postgres`,
    `    auth: { password: { env: APP_PASSWORD } }`,
    driver === "native" ? `    tunnel: { driver: native }` : `    tunnel: { driver: direct, address: "127.0.0.1:${pgPort}" }`,
    ...extra.map((l) => `    ${l}`),
  ];
  return lines.join("\n") + "\n";
}

export async function writeConfig(world: World, targets: string, head = "aws: { region: eu-west-2 }\n"): Promise<void> {
  await writeFile(world.configPath, `${head}defaults:\n  tls: { ca: ${world.rds.caPath} }\n  bastion: { tag: "Name=db-bastion" }\ntargets:\n${targets}`);
}

export interface DaemonProcess {
  child: ChildProcess;
  pid: number;
  output(): string;
  exited: Promise<unknown>;
  /** Resolves once `text` appears in the daemon's stderr. */
  waitForOutput(text: string | RegExp, timeoutMs?: number): Promise<void>;
  kill(signal?: NodeJS.Signals): Promise<void>;
}

/** Spawns `rdsd daemon` and waits for "rdsd is running". */
export async function startDaemon(world: World, extraEnv: NodeJS.ProcessEnv = {}): Promise<DaemonProcess> {
  const child = spawn(process.execPath, [RDSD, "daemon", "--config", world.configPath], { env: { ...world.env, ...extraEnv }, stdio: ["ignore", "pipe", "pipe"] });
  let output = "";
  const waiters = new Set<() => void>();
  const collect = (chunk: Buffer) => {
    output += chunk.toString();
    for (const w of waiters) w();
  };
  child.stdout!.on("data", collect);
  child.stderr!.on("data", collect);
  const exited = once(child, "exit");
  const daemon: DaemonProcess = {
    child,
    pid: child.pid!,
    output: () => output,
    exited,
    waitForOutput(text, timeoutMs = 20_000) {
      return new Promise<void>((resolve, reject) => {
        const found = () => (typeof text === "string" ? output.includes(text) : text.test(output));
        if (found()) return resolve();
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`daemon never printed ${String(text)}; output:\n${output.slice(-3000)}`));
        }, timeoutMs);
        const check = () => {
          if (found()) {
            clearTimeout(timer);
            waiters.delete(check);
            resolve();
          }
        };
        waiters.add(check);
        child.once("exit", (code) => {
          clearTimeout(timer);
          waiters.delete(check);
          if (!found()) reject(new Error(`daemon exited (${code}) before printing ${String(text)}:\n${output.slice(-3000)}`));
        });
      });
    },
    async kill(signal = "SIGTERM") {
      world.produced.push(output);
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill(signal);
      await exited;
      world.produced.push(output);
    },
  };
  await daemon.waitForOutput("rdsd is running");
  return daemon;
}

export async function rdsd(world: World, args: string[]): Promise<CommandResult> {
  const result = await runCommand(process.execPath, [RDSD, ...args], { env: world.env, timeoutMs: 30_000 });
  world.produced.push(result.stdout, result.stderr);
  return result;
}

export async function status(world: World): Promise<DaemonStatus> {
  const result = await rdsd(world, ["status", "--json"]);
  return JSON.parse(result.stdout) as DaemonStatus;
}

/**
 * Open file descriptors and resident memory of the daemon (Linux /proc). A daemon that has exited is a
 * failure that says how it ended and what it printed last, not a missing /proc entry.
 */
export async function processFootprint(daemon: DaemonProcess): Promise<{ fds: number; rssKb: number }> {
  try {
    const fds = (await readdir(`/proc/${daemon.pid}/fd`)).length;
    const statusText = await readFile(`/proc/${daemon.pid}/status`, "utf8");
    const rssKb = Number(/VmRSS:\s+(\d+)/.exec(statusText)?.[1] ?? NaN);
    return { fds, rssKb };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
    await Promise.race([daemon.exited, new Promise((resolve) => setTimeout(resolve, 1_000))]);
    const { exitCode, signalCode } = daemon.child;
    throw new Error(`the daemon exited (code ${exitCode}, signal ${signalCode}); its last output:\n${daemon.output().slice(-6000)}`);
  }
}

/** Everything the daemon wrote to its log files. */
export async function daemonLogs(world: World): Promise<string> {
  const stateDir = world.env["RDSD_STATE_DIR"]!;
  const files = (await readdir(stateDir).catch(() => [] as string[])).filter((f) => f.endsWith(".log"));
  return (await Promise.all(files.map((f) => readFile(join(stateDir, f), "utf8")))).join("\n");
}

/**
 * The secrets' appearances in everything produced, as "<secret label> in <where>" lines (empty = clean).
 * Each secret is checked whole and by a distinctive 16-character slice, so a truncated copy is caught too.
 */
export function findSecrets(texts: Record<string, string>, secrets: Record<string, string>): string[] {
  const hits: string[] = [];
  for (const [label, secret] of Object.entries(secrets)) {
    if (secret.length < 8) throw new Error(`secret ${label} is too short to grep for`);
    const needles = new Set([secret, secret.slice(-16), secret.slice(0, 16)]);
    for (const [where, text] of Object.entries(texts)) {
      for (const needle of needles) {
        if (text.includes(needle)) {
          hits.push(`${label} in ${where}`);
          break;
        }
      }
    }
  }
  return hits;
}

/** Waits until `check` returns true (no event exists for it), failing with `what` after the deadline. */
export async function eventually(what: string, check: () => Promise<boolean> | boolean, timeoutMs = 15_000, everyMs = 100): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  while (Date.now() < deadline) {
    try {
      if (await check()) return;
    } catch (err) {
      lastError = err;
    }
    await new Promise((r) => setTimeout(r, everyMs));
  }
  throw new Error(`timed out waiting for ${what}${lastError ? `: ${String(lastError)}` : ""}`);
}

/**
 * An HTTP pass-through in front of the emulator's SSM endpoint that keeps every TokenValue it answers with
 * (StartSession, ResumeSession), so the suite can grep for them. Headers pass unchanged (SigV4 signs Host).
 */
export async function recordSsmTokens(target: string): Promise<{ endpoint: string; tokens: string[]; close(): Promise<void> }> {
  const http = await import("node:http");
  const tokens: string[] = [];
  const upstream = new URL(target);
  const server = http.createServer((req, res) => {
    const forward = http.request({ host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers: req.headers }, (answer) => {
      const chunks: Buffer[] = [];
      answer.on("data", (c: Buffer) => chunks.push(c));
      answer.on("end", () => {
        const body = Buffer.concat(chunks);
        const token = /"TokenValue"\s*:\s*"([^"]+)"/.exec(body.toString("utf8"))?.[1];
        if (token) tokens.push(token);
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        res.end(body);
      });
    });
    forward.on("error", () => res.destroy());
    req.pipe(forward);
  });
  server.keepAliveTimeout = 1_000;
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
  const port = (server.address() as import("node:net").AddressInfo).port;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    tokens,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/**
 * Runs a small Node script as another local user (root only: setpriv to nobody/nogroup), returning its stdout.
 * The script gets `process.argv[1..]` = args.
 */
export async function runAsNobody(script: string, args: string[], timeoutMs = 15_000): Promise<CommandResult> {
  return runCommand("setpriv", ["--reuid=nobody", "--regid=nogroup", "--clear-groups", process.execPath, "-e", script, ...args], { timeoutMs });
}

/**
 * A raw PostgreSQL client for runAsNobody: sends a StartupMessage, prints what came back as base64. Arguments:
 * HOST PORT, or the path of a Unix socket.
 */
export const RAW_STARTUP_CLIENT = `
const net = require("node:net");
const [host, port] = [process.argv[1], Number(process.argv[2])];
const where = host.startsWith("/") ? { path: host } : { host, port };
const params = Buffer.from("user\\0someone\\0database\\0postgres\\0\\0");
const head = Buffer.alloc(8); head.writeUInt32BE(8 + params.length, 0); head.writeUInt32BE(196608, 4);
const socket = net.connect(where, () => socket.write(Buffer.concat([head, params])));
const got = [];
socket.on("data", (c) => { got.push(c); if (c.includes(0x5a)) socket.end(); });
socket.on("error", (e) => { console.log(JSON.stringify({ error: e.code })); process.exit(0); });
socket.on("close", () => { console.log(JSON.stringify({ data: Buffer.concat(got).toString("base64") })); });
setTimeout(() => { console.log(JSON.stringify({ timeout: true, data: Buffer.concat(got).toString("base64") })); process.exit(0); }, 8000).unref();
`;

/** Backend messages in `bytes`: type, and for 'E' the decoded fields (a trailing partial message is an error). */
export function backendMessages(bytes: Buffer): Array<{ type: string; body: Buffer; fields?: import("@rdsd/pg-wire").ErrorFields }> {
  const out: Array<{ type: string; body: Buffer; fields?: import("@rdsd/pg-wire").ErrorFields }> = [];
  let rest = bytes;
  while (rest.length > 0) {
    const frame = readBackendFrame(rest);
    if (frame.status !== "ok") throw new Error(`not a sequence of backend messages (${frame.status}) at ${bytes.length - rest.length}: ${rest.subarray(0, 16).toString("hex")}`);
    const message = { type: frame.frame.type, body: frame.frame.body, ...(frame.frame.type === "E" ? { fields: decodeErrorFields(frame.frame.body) } : {}) };
    out.push(message);
    rest = rest.subarray(frame.length);
  }
  return out;
}

/**
 * Runs `fn` while no other heavy phase (load, fuzz) of this suite runs, in any test file or process: vitest
 * runs files in parallel, and two of them saturating two cores would measure each other, not the daemon.
 * The lock is a directory holding the owner's pid; a lock whose owner is gone is taken over.
 */
export async function heavyPhase<T>(fn: () => Promise<T>, waitMs = 240_000): Promise<T> {
  const { mkdir, rm, writeFile: write, readFile: read } = await import("node:fs/promises");
  const { tmpdir } = await import("node:os");
  const lock = join(tmpdir(), "rdsd-hardening-heavy.lock");
  const deadline = Date.now() + waitMs;
  for (;;) {
    try {
      await mkdir(lock);
      await write(join(lock, "pid"), String(process.pid));
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
      const owner = Number(await read(join(lock, "pid"), "utf8").catch(() => ""));
      if (owner > 0 && !isAlive(owner)) await rm(lock, { recursive: true, force: true });
      else if (Date.now() > deadline) throw new Error(`another heavy test phase (pid ${owner || "?"}) held ${lock} for ${waitMs} ms`);
      else await new Promise((r) => setTimeout(r, 200));
    }
  }
  try {
    return await fn();
  } finally {
    await rm(lock, { recursive: true, force: true });
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}
