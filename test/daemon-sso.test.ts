import { chmod, mkdir, readFile, writeFile } from "node:fs/promises";
import { delimiter, join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { pgClientEnv, runCommand } from "@rdsd/testkit";
import { ACCOUNT_A, ACCOUNT_B, daemonStatus, rdsd, ssoProfile, startAccountsWorld, startDaemon, writeAccountsConfig, type AccountsWorld } from "./accounts-fixture.js";

// SSO and role profiles through the real SDK code paths, against stand-ins for SSO (GetRoleCredentials) and STS
// (AssumeRole): one account's SSO session expiring fails only its targets, and a fresh `aws sso login` cache
// file brings them back with no restart; a role profile's AssumeRole is signed by its source profile; a role
// that needs an MFA code is refused with the fix.

const HOUR = 3600_000;
let world: AccountsWorld;
beforeAll(async () => {
  world = await startAccountsWorld();
  world.env["AWS_ENDPOINT_URL_SSM"] = world.emulator.endpoint; // one variable for every target's SSM calls
});
afterAll(async () => {
  await world?.close();
});

function psql(port: number) {
  return runCommand("psql", ["-X", "-At", `host=127.0.0.1 port=${port} dbname=postgres`, "-c", "SELECT current_user"], { env: pgClientEnv({ PGCONNECT_TIMEOUT: "30" }) });
}

describe("SSO expiry in one account", () => {
  it("fails only that account's targets with the fix, and they recover from a fresh cache file without a restart", async () => {
    await world.writeAwsConfig([...ssoProfile("sso-a", "corp-a", ACCOUNT_A), ...ssoProfile("sso-b", "corp-b", ACCOUNT_B)]);
    await world.writeAwsCredentials([]);
    world.validSsoTokens.add("token-a-1").add("token-b-1");
    await world.writeSsoCache("corp-a", "token-a-1", new Date(Date.now() + 8 * HOUR));
    await world.writeSsoCache("corp-b", "token-b-1", new Date(Date.now() + 8 * HOUR));
    const { configPath, ports } = await writeAccountsConfig(world, { profiles: { a: "sso-a", b: "sso-b" } });
    const daemon = await startDaemon(configPath, world.env);
    try {
      expect((await psql(ports.a)).stdout.trim()).toBe(ACCOUNT_A.user);
      expect((await psql(ports.b)).stdout.trim()).toBe(ACCOUNT_B.user);
      expect(new Set(world.sso.requests.map((r) => `${r.caller} ${r.asked}`))).toEqual(new Set([`token-a-1 ${ACCOUNT_A.account}`, `token-b-1 ${ACCOUNT_B.account}`]));
      const pid = (await daemonStatus(world.env)).pid;

      // Hours later: account A's SSO session has ended (what `aws sso login` left behind has expired).
      await world.writeSsoCache("corp-a", "token-a-1", new Date(Date.now() - 60_000));
      world.validSsoTokens.delete("token-a-1");
      // A new session needs credentials; the role credentials SSO gave last last a second more at most, so the
      // restart is repeated until the SDK has to go back to the (now expired) SSO session.
      await expect
        .poll(
          async () => {
            const orders = (await daemonStatus(world.env)).targets.find((t) => t.name === "orders")!;
            if (orders.lastError === null) expect((await rdsd(["restart", "orders"], world.env)).code).toBe(0);
            return orders.lastError;
          },
          { timeout: 30_000 },
        )
        .toMatchObject({ message: expect.stringContaining("sso-a"), fix: "run `aws sso login --profile sso-a`" });

      // A client of A is told why, and what to do.
      const refused = await psql(ports.a);
      expect(refused.code).not.toBe(0);
      expect(refused.stderr).toContain("aws sso login --profile sso-a");

      // Account B keeps serving, new sessions included.
      const requestsBefore = world.sso.requests.length;
      expect((await rdsd(["restart", "billing"], world.env)).code).toBe(0);
      const b = await psql(ports.b);
      expect(b.stderr).toBe("");
      expect(b.stdout.trim()).toBe(ACCOUNT_B.user);
      const billing = (await daemonStatus(world.env)).targets.find((t) => t.name === "billing")!;
      expect(billing).toMatchObject({ state: "ready", lastError: null, profile: "sso-b" });
      expect(world.sso.requests.slice(requestsBefore).every((r) => r.caller !== "token-a-1")).toBe(true);

      // `aws sso login --profile sso-a` writes a fresh cache file: the next client connection brings A back.
      world.validSsoTokens.add("token-a-2");
      await world.writeSsoCache("corp-a", "token-a-2", new Date(Date.now() + 8 * HOUR));
      await expect.poll(async () => (await psql(ports.a)).stdout.trim(), { timeout: 60_000 }).toBe(ACCOUNT_A.user);
      const status = await daemonStatus(world.env);
      expect(status.pid).toBe(pid);
      // (lastError keeps the refused client's error: the proxy reports its last client failure until the next one.)
      expect(status.targets.find((t) => t.name === "orders")).toMatchObject({ state: "ready", profile: "sso-a" });
      expect(world.sso.requests.some((r) => r.caller === "token-a-2" && r.asked === ACCOUNT_A.account)).toBe(true);
    } finally {
      expect(await daemon.stop()).toBe(0);
    }
  }, 150_000);
});

describe("role profiles", () => {
  it("assumes a role_arn + source_profile role through STS signed by the source profile, and refuses an MFA role with the fix", async () => {
    const base = { accessKeyId: "AKIDTESTBASEUSER0009", secretAccessKey: "base-user-secret-not-a-real-aws-key-0009" };
    world.stsCallers.splice(0, world.stsCallers.length, base);
    await world.writeAwsConfig([
      "[profile base]",
      "region = eu-west-2",
      "[profile role-b]",
      `role_arn = arn:aws:iam::${ACCOUNT_B.account}:role/DbAccess`,
      "source_profile = base",
      "region = eu-west-2",
      "[profile mfa-a]",
      `role_arn = arn:aws:iam::${ACCOUNT_A.account}:role/DbAccess`,
      "source_profile = base",
      "mfa_serial = arn:aws:iam::999999999999:mfa/dev",
      "region = eu-west-2",
    ]);
    await world.writeAwsCredentials(["[base]", `aws_access_key_id = ${base.accessKeyId}`, `aws_secret_access_key = ${base.secretAccessKey}`]);
    const { configPath, ports } = await writeAccountsConfig(world, { profiles: { a: "mfa-a", b: "role-b" } });
    const stsBefore = world.sts.requests.length;
    // (A session an earlier test could not terminate, its credentials having expired, may still be open.)
    const earlierSessions = new Set(world.emulator.sessions().map((s) => s.sessionId));
    const daemon = await startDaemon(configPath, world.env);
    try {
      const b = await psql(ports.b);
      expect(b.stderr).toBe("");
      expect(b.stdout.trim()).toBe(ACCOUNT_B.user);
      // AssumeRole was signed by the source profile's key (its signature checked by the stand-in).
      expect(world.sts.requests.slice(stsBefore)).toContainEqual({ path: "AssumeRole", caller: base.accessKeyId, asked: `arn:aws:iam::${ACCOUNT_B.account}:role/DbAccess` });
      expect(world.sts.requests.slice(stsBefore).every((r) => r.asked !== `arn:aws:iam::${ACCOUNT_A.account}:role/DbAccess`)).toBe(true);
      // ...and the session was started with the role's keys.
      const session = world.emulator.sessions({ active: true }).find((s) => s.properties.host === ACCOUNT_B.host);
      expect(session).toMatchObject({ account: ACCOUNT_B.account, startedBy: ACCOUNT_B.accessKeyId });

      const ordersError = async () => (await daemonStatus(world.env)).targets.find((t) => t.name === "orders")!.lastError;
      await expect.poll(ordersError, { timeout: 30_000 }).not.toBeNull();
      const orders = (await daemonStatus(world.env)).targets.find((t) => t.name === "orders")!;
      expect(orders.state).not.toBe("ready");
      expect(orders.lastError?.message).toContain("profile mfa-a assumes a role that needs an MFA code");
      expect(orders.lastError?.fix).toContain("use an SSO profile");
      expect(orders.lastError?.fix).toContain("credential_process");
      expect(world.emulator.sessions().some((s) => !earlierSessions.has(s.sessionId) && s.properties.host === ACCOUNT_A.host)).toBe(false);
    } finally {
      expect(await daemon.stop()).toBe(0);
    }
  }, 90_000);
});

describe("SSO expiry notifications", () => {
  it("logs and notifies once per profile per expiry, and not at all on the desktop with notifications.desktop: false", async () => {
    const bin = join(world.dir.path, "notify-bin");
    const shown = join(world.dir.path, "notifications.txt");
    await mkdir(bin, { recursive: true });
    await writeFile(shown, "");
    await writeFile(join(bin, "notify-send"), `#!${process.execPath}\nrequire("node:fs").appendFileSync(${JSON.stringify(shown)}, JSON.stringify(process.argv.slice(2)) + "\\n");\n`);
    await chmod(join(bin, "notify-send"), 0o755);
    const env = { ...world.env, PATH: [bin, process.env["PATH"]].join(delimiter), DISPLAY: ":99" };
    const notifications = async () => (await readFile(shown, "utf8")).split("\n").filter(Boolean).map((l) => JSON.parse(l) as string[]);

    await world.writeAwsConfig([...ssoProfile("sso-a", "corp-a", ACCOUNT_A), ...ssoProfile("sso-b", "corp-b", ACCOUNT_B)]);
    world.validSsoTokens.add("token-a-soon").add("token-b-1");
    await world.writeSsoCache("corp-a", "token-a-soon", new Date(Date.now() + 10 * 60_000));
    await world.writeSsoCache("corp-b", "token-b-1", new Date(Date.now() + 8 * HOUR));
    const { configPath } = await writeAccountsConfig(world, { profiles: { a: "sso-a", b: "sso-b" } });
    let daemon = await startDaemon(configPath, env);
    try {
      await expect.poll(notifications, { timeout: 20_000 }).toHaveLength(1);
      const [args] = await notifications();
      expect(args).toEqual(["--app-name=rdsd", expect.stringMatching(/^rdsd: SSO session for profile sso-a ends in (9|10) min$/), "Targets orders need it. Run `aws sso login --profile sso-a` (or `rdsd login`)."]);

      // Checked again (reload), same expiry: nothing new. A renewed session nearing its new end: told again.
      expect((await rdsd(["reload"], env)).code).toBe(0);
      await world.writeSsoCache("corp-a", "token-a-soon", new Date(Date.now() + 12 * 60_000));
      expect((await rdsd(["reload"], env)).code).toBe(0);
      await expect.poll(notifications, { timeout: 20_000 }).toHaveLength(2);
      expect((await notifications())[1]![1]).toMatch(/^rdsd: SSO session for profile sso-a ends in (11|12) min$/);
      await expect.poll(async () => (await daemonStatus(env)).targets.map((t) => t.state), { timeout: 30_000 }).toEqual(["ready", "ready"]);
    } finally {
      expect(await daemon.stop()).toBe(0);
    }
    expect(await notifications()).toHaveLength(2);
    expect(daemon.output().match(/SSO session for profile sso-a ends in/g)).toHaveLength(2);

    // Switched off: the log still says it, the desktop is left alone.
    await writeFile(configPath, `notifications: { desktop: false }\n${await readFile(configPath, "utf8")}`);
    daemon = await startDaemon(configPath, env);
    try {
      await expect.poll(() => daemon.output(), { timeout: 20_000 }).toMatch(/SSO session for profile sso-a ends in/);
      // Stopped once both tunnels are up: stopping during a session's opening is test/daemon-stop.test.ts's subject.
      await expect.poll(async () => (await daemonStatus(env)).targets.map((t) => t.state), { timeout: 30_000 }).toEqual(["ready", "ready"]);
    } finally {
      expect(await daemon.stop()).toBe(0);
    }
    expect(await notifications()).toHaveLength(2);
  }, 120_000);
});
