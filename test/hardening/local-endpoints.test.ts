import { spawnSync } from "node:child_process";
import { chmod, lstat, readFile, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort, pgClientEnv, postgresBinDir, runCommand } from "@rdsd/testkit";
import { backendMessages, daemonLogs, DB_PASSWORD, findSecrets, HOST, RAW_STARTUP_CLIENT, RDSD, rdsd, runAsNobody, startDaemon, startWorld, status, targetYaml, writeConfig, type DaemonProcess, type World } from "./harness.js";

// A real daemon's local endpoints: Unix-socket listeners (libpq's convention, private to the user, stale
// sockets replaced, removed on stop) and a read-only target as `rdsd status`, `rdsd url` and a refused write show it.

const asRoot = process.platform === "linux" && process.getuid?.() === 0;
/** A Python that has psycopg2: PATH's, else Debian's own (python3-psycopg2 installs there; pyenv shims may shadow it). */
const python = ["python3", "/usr/bin/python3"].find((p) => spawnSync(p, ["-c", "import psycopg2"]).status === 0);
const hasPsycopg = python !== undefined;

let world: World;
let daemon: DaemonProcess | undefined;
const ports: Record<string, number> = {};
/** `socket: true` on a target with a TCP port: <run>/sockets/sock/.s.PGSQL.<port>. */
let managedDir: string;
/** `socket: PATH` on a target without listen: <PATH>/.s.PGSQL.5432. */
let chosenDir: string;

beforeAll(async () => {
  world = await startWorld();
  for (const name of ["guarded", "sock"]) ports[name] = await freePort();
  managedDir = join(world.env["RDSD_RUNTIME_DIR"]!, "sockets", "sock");
  chosenDir = join(world.dir.path, "pg-sockets");
  const direct = (name: string, extra: string[] = []) => targetYaml(name, ports[name]!, extra, "direct", world.pg.port);
  const socketOnly = direct("sockonly-placeholder").replace("sockonly-placeholder", "sockonly").replace(/ {4}listen: .*\n/, `    socket: ${chosenDir}\n`);
  await writeConfig(world, direct("guarded", ["readOnly: true", "parameters: { statement_timeout: 5min, search_path: \"app, public\" }"]) + direct("sock", ["socket: true"]) + socketOnly);
  daemon = await startDaemon(world);
});

afterAll(async () => {
  await daemon?.kill();
  await world?.close();
});

/** psql through a socket directory: `host=<dir> port=<n>`, as libpq looks for `<dir>/.s.PGSQL.<n>`. */
async function psqlVia(dir: string, port: number, sql: string) {
  const result = await runCommand(join(postgresBinDir(), "psql"), ["-X", "-w", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", `host=${dir} port=${port} user=someone dbname=postgres`, "-c", sql], { env: pgClientEnv(), timeoutMs: 20_000 });
  world.produced.push(result.stdout, result.stderr);
  return result;
}

/** What another local user's raw client got back from a Unix socket, as backend messages (or its connect error). */
async function connectAsNobody(path: string) {
  const result = await runAsNobody(RAW_STARTUP_CLIENT, [path]);
  world.produced.push(result.stdout, result.stderr);
  const answer = JSON.parse(result.stdout.trim().split("\n").pop()!) as { data?: string; error?: string; timeout?: boolean };
  expect(answer.timeout, "the daemon answered in time").toBeUndefined();
  return answer.error !== undefined ? { error: answer.error } : { messages: backendMessages(Buffer.from(answer.data ?? "", "base64")) };
}

describe("Unix-socket listeners", () => {
  it("socket: true puts libpq's .s.PGSQL.<listen port> in a private per-target directory; status and doctor list it", async () => {
    const path = join(managedDir, `.s.PGSQL.${ports["sock"]}`);
    expect((await stat(managedDir)).mode & 0o777).toBe(0o700);
    expect((await lstat(path)).isSocket()).toBe(true);
    expect((await lstat(path)).mode & 0o777).toBe(0o600);
    const targets = (await status(world)).targets;
    expect(targets.find((t) => t.name === "sock")).toMatchObject({ listen: [`127.0.0.1:${ports["sock"]}`], socket: path });
    expect(targets.find((t) => t.name === "sockonly")).toMatchObject({ listen: [], socket: join(chosenDir, ".s.PGSQL.5432") });
    expect(targets.find((t) => t.name === "guarded")!.socket).toBeNull();
    expect((await rdsd(world, ["status"])).stdout).toContain(path);
    const doctor = (JSON.parse((await rdsd(world, ["doctor", "--config", world.configPath, "--json"])).stdout) as { checks: Array<{ name: string; status: string; detail: string }> }).checks;
    expect(doctor.find((c) => c.name === `socket sock ${path}`)).toMatchObject({ status: "ok", detail: expect.stringContaining("in use by rdsd") });
    expect(doctor.find((c) => c.name === "socket peer check")).toMatchObject({ status: "ok" });
  });

  it("psql reaches both with host=<dir> port=<n>, and with the URL of rdsd url --socket", async () => {
    const viaManaged = await psqlVia(managedDir, ports["sock"]!, "SELECT current_user");
    expect(viaManaged.stderr).toBe("");
    expect(viaManaged.stdout.trim()).toBe("app");
    const viaChosen = await psqlVia(chosenDir, 5432, "SELECT current_user");
    expect(viaChosen.stdout.trim()).toBe("app");
    const url = await rdsd(world, ["url", "sock", "--socket"]);
    expect(url.stdout.trim()).toBe(`postgresql://app@/postgres?host=${encodeURIComponent(managedDir)}&port=${ports["sock"]}`);
    // A target with only a socket gets its socket URL without asking.
    expect((await rdsd(world, ["url", "sockonly"])).stdout.trim()).toBe(`postgresql://app@/postgres?host=${encodeURIComponent(chosenDir)}&port=5432`);
    const run = await runCommand(join(postgresBinDir(), "psql"), ["-X", "-w", "-A", "-t", "-d", url.stdout.trim(), "-c", "SELECT 'via url'"], { env: pgClientEnv(), timeoutMs: 20_000 });
    expect(run.stdout.trim()).toBe("via url");
  });

  it("node-postgres connects with host=<dir>", async () => {
    const client = new pg.Client({ host: managedDir, port: ports["sock"], user: "me", database: "postgres" });
    await client.connect();
    try {
      expect((await client.query<{ u: string }>("SELECT current_user AS u")).rows[0]!.u).toBe("app");
    } finally {
      await client.end();
    }
  });

  it.skipIf(!hasPsycopg)(`psycopg2 (libpq through Python) connects with host=<dir>${hasPsycopg ? "" : " (skipped: python3-psycopg2 is not installed)"}`, async () => {
    const script = "import sys, psycopg2\nc = psycopg2.connect(host=sys.argv[1], port=int(sys.argv[2]), user='me', dbname='postgres')\ncur = c.cursor()\ncur.execute('SELECT current_user')\nprint(cur.fetchone()[0])\nc.close()";
    const result = await runCommand(python!, ["-c", script, managedDir, String(ports["sock"])], { timeoutMs: 20_000 });
    world.produced.push(result.stdout, result.stderr);
    expect(result.stderr).toBe("");
    expect(result.stdout.trim()).toBe("app");
  });

  it.runIf(asRoot)("refuses another uid: the directory keeps it out, and with the directory opened up the peer check sends FATAL 28000", async () => {
    const path = join(managedDir, `.s.PGSQL.${ports["sock"]}`);
    expect(await connectAsNobody(path)).toEqual({ error: "EACCES" });
    const runDir = world.env["RDSD_RUNTIME_DIR"]!;
    const opened = [runDir, join(runDir, "sockets"), managedDir];
    for (const dir of opened) await chmod(dir, 0o755);
    await chmod(path, 0o777);
    try {
      const answer = await connectAsNobody(path);
      expect(answer.messages).toHaveLength(1);
      const [error] = answer.messages!;
      expect(error).toMatchObject({ type: "E", fields: { severity: "FATAL", code: "28000" } });
      expect(error!.fields!.message).toMatch(/^rdsd refused this connection: it comes from local user uid 65534, and target sock serves only uid \d+, the user running rdsd$/);
      expect(error!.fields!.hint).toContain("allowOtherUsers: true");
      expect(daemon!.output()).toMatch(/connection from another local user refused.*peercred/);
    } finally {
      await chmod(path, 0o600);
      for (const dir of opened) await chmod(dir, 0o700);
    }
  });

  it("a daemon that crashed leaves its sockets behind; the next one replaces them, and a clean stop removes rdsd's directory", async () => {
    await daemon!.kill("SIGKILL");
    const managedSocket = join(managedDir, `.s.PGSQL.${ports["sock"]}`);
    const chosenSocket = join(chosenDir, ".s.PGSQL.5432");
    expect((await lstat(managedSocket)).isSocket(), "the crash left the socket file").toBe(true);
    expect((await lstat(chosenSocket)).isSocket()).toBe(true);
    expect((await psqlVia(managedDir, ports["sock"]!, "SELECT 1")).code, "nobody answers on it").not.toBe(0);
    daemon = await startDaemon(world);
    expect((await psqlVia(managedDir, ports["sock"]!, "SELECT 'replaced'")).stdout.trim()).toBe("replaced");
    expect((await psqlVia(chosenDir, 5432, "SELECT 'replaced'")).stdout.trim()).toBe("replaced");
    await daemon.kill("SIGTERM");
    daemon = undefined;
    await expect(lstat(managedDir), "rdsd's own directory is gone").rejects.toMatchObject({ code: "ENOENT" });
    await expect(lstat(chosenSocket), "the socket in the user's directory is gone").rejects.toMatchObject({ code: "ENOENT" });
    expect((await stat(chosenDir)).isDirectory(), "the user's directory stays").toBe(true);
    daemon = await startDaemon(world);
  });

  it("rdsd reload adds a socket to a running target and removes one (its directory goes with it)", async () => {
    const original = await readFile(world.configPath, "utf8");
    try {
      // guarded gains `socket: true`; sock loses its socket.
      const changed = original.replace("    readOnly: true\n", "    readOnly: true\n    socket: true\n").replace("    socket: true\n  sockonly:", "  sockonly:");
      expect(changed.match(/socket: true/g)).toHaveLength(1);
      await writeFile(world.configPath, changed);
      const reload = await rdsd(world, ["reload", "--json"]);
      expect(reload.code).toBe(0);
      const guardedDir = join(world.env["RDSD_RUNTIME_DIR"]!, "sockets", "guarded");
      const targets = (await status(world)).targets;
      expect(targets.find((t) => t.name === "guarded")!.socket).toBe(join(guardedDir, `.s.PGSQL.${ports["guarded"]}`));
      expect(targets.find((t) => t.name === "sock")!.socket).toBeNull();
      expect((await psqlVia(guardedDir, ports["guarded"]!, "SHOW default_transaction_read_only")).stdout.trim()).toBe("on");
      await expect(lstat(managedDir), "sock's socket directory went with its socket").rejects.toMatchObject({ code: "ENOENT" });
    } finally {
      await writeFile(world.configPath, original);
      expect((await rdsd(world, ["reload"])).code).toBe(0);
    }
    expect((await psqlVia(managedDir, ports["sock"]!, "SELECT 'back'")).stdout.trim()).toBe("back");
  });

  it("refuses a socket path too long for the OS at load, with file:line:col and the fix", async () => {
    const config = join(world.dir.path, "long-socket.yaml");
    await writeFile(config, `targets:\n  sock:\n    host: ${HOST}\n    user: app\n    tunnel: { driver: direct }\n    socket: true\n`);
    // Short enough for the control socket (<run>/rdsd.sock), too long for <run>/sockets/sock/.s.PGSQL.5432.
    // Dotted: the daemon's log redacts any 40-character run of token-like characters, paths included.
    const longRun = join(world.dir.path, "r.".repeat(45).slice(0, 90 - world.dir.path.length - 1));
    const result = await runCommand(process.execPath, [RDSD, "daemon", "--config", config], { env: { ...world.env, RDSD_RUNTIME_DIR: longRun }, timeoutMs: 20_000 });
    world.produced.push(result.stdout, result.stderr);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain(`${config}:6:13: targets.sock.socket: the socket path ${longRun}/sockets/sock/.s.PGSQL.5432 is`);
    expect(result.stderr).toContain("longer than the 107 bytes linux allows for a Unix socket: set socket: to a shorter directory (e.g. socket: /tmp/rdsd-sock), or point RDSD_RUNTIME_DIR at a shorter runtime directory");
  });
});

describe("a read-only target", () => {
  it("says so in rdsd status (JSON and table) with the parameters it sends", async () => {
    const guarded = (await status(world)).targets.find((t) => t.name === "guarded")!;
    expect(guarded.readOnly).toBe(true);
    expect(guarded.parameters).toEqual({ statement_timeout: "5min", search_path: "app, public", default_transaction_read_only: "on" });
    const table = await rdsd(world, ["status"]);
    expect(table.stdout).toMatch(/^guarded \(read-only\)\s+127\.0\.0\.1:\d+/m);
  });

  it("says so in rdsd url (on stderr, so $(rdsd url X) is still just the URL, and in --json)", async () => {
    const url = await rdsd(world, ["url", "guarded"]);
    expect(url.code).toBe(0);
    expect(url.stdout.trim()).toBe(`postgresql://app@127.0.0.1:${ports["guarded"]}/postgres`);
    expect(url.stderr).toContain("target guarded is read-only in rdsd's config (readOnly: true)");
    expect(JSON.parse((await rdsd(world, ["url", "guarded", "--json"])).stdout)).toMatchObject({ readOnly: true });
  });

  it("refuses a write with SQLSTATE 25006 and the hint naming the target; its settings are in force", async () => {
    const client = new pg.Client({ host: "127.0.0.1", port: ports["guarded"], user: "me", database: "postgres" });
    await client.connect();
    try {
      const error = await client.query("CREATE TABLE t (x int)").catch((err: unknown) => err as pg.DatabaseError);
      expect(error).toMatchObject({ code: "25006", hint: "target guarded is read-only in rdsd's config (readOnly: true)" });
      const settings = await client.query<{ ro: string; st: string; sp: string }>("SELECT current_setting('default_transaction_read_only') AS ro, current_setting('statement_timeout') AS st, current_setting('search_path') AS sp");
      expect(settings.rows[0]).toEqual({ ro: "on", st: "5min", sp: "app, public" });
    } finally {
      await client.end();
    }
  });
});

describe("secrets", () => {
  it("none of the secrets used appears in anything this file produced", async () => {
    await daemon?.kill();
    daemon = undefined;
    const texts = Object.fromEntries([...world.produced.map((t, i) => [`output ${i}`, t]), ["daemon log", await daemonLogs(world)]]);
    expect(findSecrets(texts, { "database password": DB_PASSWORD })).toEqual([]);
  });
});
