import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { giveToServer, postgresOsUser, runServerProgram, serverCommand, serverEnv, writeServerFile, type ServerUser } from "./index.js";

const asRoot = process.getuid?.() === 0;
const hasSetpriv = ["/usr/bin/setpriv", "/bin/setpriv"].some((path) => existsSync(path));

describe("serverEnv", () => {
  it("drops inherited PG* and LC_* variables and fixes the locale", () => {
    const env = serverEnv({ PATH: "/usr/bin", PGHOST: "elsewhere", PGPASSWORD: "secret", LC_ALL: "de_DE.UTF-8", LANG: "fr_FR.UTF-8", HOME: "/root" });
    expect(env).toEqual({ PATH: "/usr/bin", HOME: "/root", LANG: "C" });
  });
});

describe.skipIf(!hasSetpriv)("serverCommand", () => {
  it("switches to the given user through setpriv, with SIGQUIT when this process dies", () => {
    const { file, args } = serverCommand("/pg/bin/postgres", ["-D", "/data"], { uid: 101, gid: 104 });
    expect(file).toMatch(/\/setpriv$/);
    expect(args).toEqual(["--reuid=101", "--regid=104", "--clear-groups", "--pdeathsig", "SIGQUIT", "--", "/pg/bin/postgres", "-D", "/data"]);
  });

  it("keeps the parent-death signal without a user to switch to", () => {
    expect(serverCommand("/pg/bin/initdb", ["-D", "/data"], undefined).args).toEqual(["--pdeathsig", "SIGQUIT", "--", "/pg/bin/initdb", "-D", "/data"]);
  });
});

describe.skipIf(!asRoot || !hasSetpriv)("as root", () => {
  let user: ServerUser;
  let dir: string;
  beforeAll(async () => {
    user = (await postgresOsUser())!;
    dir = await mkdtemp(join(tmpdir(), "rdsd-pg-server-test-"));
    await giveToServer(dir, user);
  });
  afterAll(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it("postgresOsUser() is the postgres account of the passwd database", () => {
    const fields = execFileSync("getent", ["passwd", "postgres"], { encoding: "utf8" }).split(":");
    expect(user).toEqual({ uid: Number(fields[2]), gid: Number(fields[3]) });
    expect(user.uid).not.toBe(0);
  });

  it("runServerProgram runs as that user with the clean environment and feeds stdin", async () => {
    const ids = await runServerProgram("/bin/sh", ["-c", 'echo "$(id -u) $(id -g) $(id -G) ${PGHOST:-unset} $LANG"; cat'], { user, cwd: dir, input: "from stdin" });
    expect(ids).toEqual({ code: 0, signal: null, output: `${user.uid} ${user.gid} ${user.gid} unset C\nfrom stdin`, timedOut: false });
  });

  it("runServerProgram kills a program past its deadline and says so", async () => {
    const result = await runServerProgram("/bin/sleep", ["30"], { user, cwd: dir, timeoutMs: 100 });
    expect(result).toMatchObject({ code: null, signal: "SIGKILL", timedOut: true });
  });

  it("runServerProgram rejects when the program cannot be started", async () => {
    await expect(runServerProgram("/bin/true", [], { user, cwd: join(dir, "no-such-dir") })).rejects.toThrow(/cannot run .*setpriv/);
  });

  it("writeServerFile gives the file exactly its mode and to the server user", async () => {
    const path = join(dir, "server.key");
    await writeServerFile(path, "key", 0o600, user);
    const info = await stat(path);
    expect({ mode: info.mode & 0o777, uid: info.uid, gid: info.gid }).toEqual({ mode: 0o600, uid: user.uid, gid: user.gid });
  });
});
