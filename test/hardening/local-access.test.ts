import { chown, lstat, mkdir, stat } from "node:fs/promises";
import { join } from "node:path";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort, runCommand } from "@rdsd/testkit";
import { backendMessages, daemonLogs, DB_PASSWORD, findSecrets, RAW_STARTUP_CLIENT, RDSD, runAsNobody, startDaemon, startWorld, status, targetYaml, writeConfig, type DaemonProcess, type World } from "./harness.js";

// Local access, tested as another local user would try it: a target's port and the control socket refuse
// other uids by default; listeners leave loopback only with an explicit, loudly logged opt-in.

const asRoot = process.platform === "linux" && process.getuid?.() === 0;

let world: World;
let daemon: DaemonProcess | undefined;
const ports: Record<string, number> = {};

beforeAll(async () => {
  world = await startWorld();
  for (const name of ["mine", "shared", "lazy"]) ports[name] = await freePort();
  const direct = (name: string, extra: string[] = []) =>
    targetYaml(name, ports[name]!, extra, "direct", world.pg.port).replace(`listen: "127.0.0.1:${ports[name]}"`, `listen: ${ports[name]}`);
  // An IAM target behind a lazy SSM tunnel: a client that gets past the local-user check would start a session
  // and have a token signed.
  const lazyIam = targetYaml("lazy", ports["lazy"]!)
    .replace("    auth: { password: { env: APP_PASSWORD } }\n", "")
    .replace("tunnel: { driver: native }", "tunnel: { driver: native, mode: lazy }");
  await writeConfig(world, direct("mine") + direct("shared", ["allowOtherUsers: true"]) + lazyIam);
  daemon = await startDaemon(world);
});

afterAll(async () => {
  await daemon?.kill();
  await world?.close();
});

/** What another local user's raw client got back, as backend messages. */
async function connectAsNobody(host: string, port: number) {
  const result = await runAsNobody(RAW_STARTUP_CLIENT, [host, String(port)]);
  world.produced.push(result.stdout, result.stderr);
  const answer = JSON.parse(result.stdout.trim().split("\n").pop()!) as { data?: string; error?: string; timeout?: boolean };
  expect(answer.timeout, "the daemon answered in time").toBeUndefined();
  const bytes = Buffer.from(answer.data ?? "", "base64");
  return backendMessages(bytes);
}

describe.runIf(asRoot)("a target's port and other local users", () => {
  it("refuses another uid with a FATAL that names the uid and the switch, over IPv4 and IPv6", async () => {
    for (const host of ["127.0.0.1", "::1"]) {
      const messages = await connectAsNobody(host, ports["mine"]!);
      expect(messages).toHaveLength(1);
      const [error] = messages;
      expect(error).toMatchObject({ type: "E", fields: { severity: "FATAL", code: "28000" } });
      expect(error!.fields!.message).toContain("comes from local user uid 65534");
      expect(error!.fields!.hint).toContain("allowOtherUsers: true");
    }
    expect(daemon!.output()).toMatch(/connection from another local user refused.*uid.*65534/);
  });

  it("refuses another uid on a lazy IAM target before anything else: no session, no token, no word of the target's state", async () => {
    const before = world.emulator.sessions().length;
    const messages = await connectAsNobody("127.0.0.1", ports["lazy"]!);
    expect(messages).toHaveLength(1);
    const [error] = messages;
    expect(error).toMatchObject({ type: "E", fields: { severity: "FATAL", code: "28000" } });
    expect(error!.fields!.message).toMatch(/^rdsd refused this connection: it comes from local user uid 65534, and target lazy serves only uid \d+, the user running rdsd$/);
    expect(world.emulator.sessions().length, "no StartSession reached the emulator").toBe(before);
    const lazy = (await status(world)).targets.find((t) => t.name === "lazy")!;
    expect(lazy.state).toBe("idle");
    expect(lazy.sessionIds).toEqual([]);
    expect(lazy.tokenAgeSeconds, "no IAM token was signed").toBeNull();
  });

  it("serves another uid on a target with allowOtherUsers: true", async () => {
    const messages = await connectAsNobody("127.0.0.1", ports["shared"]!);
    expect(messages[0]!.type).toBe("R");
    expect(messages[0]!.body.readUInt32BE(0)).toBe(0); // AuthenticationOk
    expect(messages.map((m) => m.type)).toContain("Z");
  });

  it("still serves the user running rdsd on the guarded target", async () => {
    const client = new pg.Client({ host: "127.0.0.1", port: ports["mine"], user: "me", database: "postgres" });
    await client.connect();
    expect((await client.query<{ u: string }>("SELECT current_user AS u")).rows[0]!.u).toBe("app");
    await client.end();
  });
});

describe.runIf(asRoot)("the control socket and other local users", () => {
  it("is a 0600 socket in a 0700 directory, and another uid cannot connect even with the directory opened up", async () => {
    const runDir = world.env["RDSD_RUNTIME_DIR"]!;
    const socket = join(runDir, "rdsd.sock");
    expect((await stat(runDir)).mode & 0o777).toBe(0o700);
    expect((await lstat(socket)).mode & 0o777).toBe(0o600);
    const tryConnect = `const s = require("node:net").connect(process.argv[1]); s.on("connect", () => { console.log("connected"); s.destroy(); }); s.on("error", (e) => console.log(e.code));`;
    expect((await runAsNobody(tryConnect, [socket])).stdout.trim()).toBe("EACCES");
    // The directory is the first guard; the socket's own mode is the second.
    const { chmod } = await import("node:fs/promises");
    await chmod(runDir, 0o755);
    try {
      expect((await runAsNobody(tryConnect, [socket])).stdout.trim()).toBe("EACCES");
    } finally {
      await chmod(runDir, 0o700);
    }
  });

  it("a daemon refuses a runtime directory owned by another user", async () => {
    const foreign = join(world.dir.path, "foreign-run");
    await mkdir(foreign, { mode: 0o700 });
    await chown(foreign, 65534, 65534);
    const result = await runCommand(process.execPath, [RDSD, "daemon", "--config", world.configPath], { env: { ...world.env, RDSD_RUNTIME_DIR: foreign }, timeoutMs: 20_000 });
    world.produced.push(result.stdout, result.stderr);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain(`${foreign} belongs to another user (uid 65534)`);
  });
});

describe("listeners leave loopback only when the config says so", () => {
  it("refuses a non-loopback listen address without the opt-in, naming file, line, key and the opt-in", async () => {
    const port = await freePort();
    const config = join(world.dir.path, "exposed.yaml");
    const { writeFile } = await import("node:fs/promises");
    await writeFile(config, `aws: { region: eu-west-2 }\ntargets:\n  exposed:\n    host: db.example.com\n    user: app\n    listen: "192.0.2.10:${port}"\n    tunnel: { driver: direct }\n`);
    const result = await runCommand(process.execPath, [RDSD, "daemon", "--config", config], { env: { ...world.env, RDSD_RUNTIME_DIR: join(world.dir.path, "run-exposed") }, timeoutMs: 20_000 });
    world.produced.push(result.stdout, result.stderr);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain(`${config}:6:13: targets.exposed.listen: 192.0.2.10 is not a loopback address`);
    expect(result.stderr).toContain("allowNonLoopback: true");
  });

  it("with allowNonLoopback: true, warns loudly at start (the TEST-NET address is never bound: it is not on this machine)", async () => {
    const port = await freePort();
    const config = join(world.dir.path, "exposed-ok.yaml");
    const { writeFile } = await import("node:fs/promises");
    await writeFile(config, `aws: { region: eu-west-2 }\ntargets:\n  exposed:\n    host: db.example.com\n    user: app\n    listen: "192.0.2.10:${port}"\n    allowNonLoopback: true\n    tls: { ca: ${world.rds.caPath} }\n    tunnel: { driver: direct }\n`);
    const env = { ...world.env, RDSD_RUNTIME_DIR: join(world.dir.path, "run-exposed-ok"), RDSD_STATE_DIR: join(world.dir.path, "state-exposed-ok") };
    const exposed = await startDaemon({ ...world, configPath: config, env });
    try {
      await exposed.waitForOutput("WARNING: target exposed listens on non-loopback 192.0.2.10");
      await exposed.waitForOutput(/cannot listen on 192\.0\.2\.10/);
    } finally {
      await exposed.kill();
    }
  });
});

describe("secrets", () => {
  it("none of the secrets used appears in anything this file produced", async () => {
    await daemon?.kill();
    daemon = undefined;
    const texts = Object.fromEntries([...world.produced.map((t, i) => [`output ${i}`, t]), ["daemon log", await daemonLogs(world)]]);
    expect(findSecrets(texts, { "database password": DB_PASSWORD, "AWS secret key": world.emulator.credentials.secretAccessKey })).toEqual([]);
  });
});
