import { chmod, mkdir, readFile, writeFile } from "node:fs/promises";
import { delimiter, join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { DoctorCheck } from "@rdsd/daemon";
import { freePort } from "@rdsd/testkit";
import { ACCOUNT_A, ACCOUNT_B, daemonStatus, rdsd, ssoProfile, startAccountsWorld, startDaemon, writeAccountsConfig, type AccountsWorld } from "./accounts-fixture.js";

// `rdsd login` with a stand-in `aws` on PATH that records its arguments and, like `aws sso login`, writes a
// fresh token for the profile's sso-session into ~/.aws/sso/cache.

const HOUR = 3600_000;
let world: AccountsWorld;
let calls: string;
let env: NodeJS.ProcessEnv;

beforeAll(async () => {
  world = await startAccountsWorld();
  const bin = join(world.dir.path, "bin");
  calls = join(world.dir.path, "aws-calls.txt");
  await writeFile(calls, "");
  await mkdir(bin);
  // profile -> sso-session, as in the config file below.
  const sessions = { "sso-a": "corp-a", "sso-a-admin": "corp-a", "sso-b": "corp-b" };
  await writeFile(
    join(bin, "aws"),
    `#!${process.execPath}
const { appendFileSync, writeFileSync } = require("node:fs");
const { createHash } = require("node:crypto");
const args = process.argv.slice(2);
appendFileSync(${JSON.stringify(calls)}, args.join(" ") + "\\n");
const session = ${JSON.stringify(sessions)}[args[3]];
if (args[0] !== "sso" || args[1] !== "login" || args[2] !== "--profile" || !session) { console.error("stand-in aws: unexpected " + args.join(" ")); process.exit(2); }
const file = require("node:path").join(process.env.HOME, ".aws", "sso", "cache", createHash("sha1").update(session).digest("hex") + ".json");
writeFileSync(file, JSON.stringify({ startUrl: "https://example-corp.awsapps.com/start", region: "eu-west-1", accessToken: "fresh-" + session, expiresAt: new Date(Date.now() + 8 * 3600000).toISOString() }));
`,
  );
  await chmod(join(bin, "aws"), 0o755);
  env = { ...world.env, PATH: [bin, process.env["PATH"]].join(delimiter), AWS_ENDPOINT_URL_SSM: world.emulator.endpoint };
  world.validSsoTokens.add("fresh-corp-a").add("fresh-corp-b").add("token-b-1");
  await world.writeAwsConfig([...ssoProfile("sso-a", "corp-a", ACCOUNT_A), ...ssoProfile("sso-b", "corp-b", ACCOUNT_B), "[profile sso-a-admin]", "sso_session = corp-a", `sso_account_id = ${ACCOUNT_A.account}`, "sso_role_name = DbAdmin", "region = eu-west-2"]);
  await world.writeAwsCredentials([]);
});
afterAll(async () => {
  await world?.close();
});

const awsCalls = async () => (await readFile(calls, "utf8")).split("\n").filter(Boolean);

describe("rdsd login", () => {
  it("logs in once per expired SSO session the targets need, not for valid ones, then the daemon retries them", async () => {
    await world.writeSsoCache("corp-a", "token-a-old", new Date(Date.now() - HOUR));
    await world.writeSsoCache("corp-b", "token-b-1", new Date(Date.now() + 8 * HOUR));
    const admin = await freePort();
    const { configPath } = await writeAccountsConfig(world, {
      profiles: { a: "sso-a", b: "sso-b" },
      // A second profile on account A's sso-session: still one login for that session.
      extraTargets: ["  orders-admin:", `    host: ${ACCOUNT_A.host}`, `    listen: "127.0.0.1:${admin}"`, `    user: ${ACCOUNT_A.user}`, "    aws: { profile: sso-a-admin }"],
    });
    const daemon = await startDaemon(configPath, env);
    try {
      const state = async () => Object.fromEntries((await daemonStatus(env)).targets.map((t) => [t.name, t.state]));
      await expect.poll(async () => (await daemonStatus(env)).targets.filter((t) => t.lastError?.fix === `run \`aws sso login --profile ${t.profile}\``).map((t) => t.name), { timeout: 30_000 }).toEqual(["orders", "orders-admin"]);
      expect((await state())["billing"]).toBe("ready");

      // doctor lists each profile's SSO session: sso-a's ended, sso-b's still running.
      const doctor = await rdsd(["doctor", "--config", configPath, "--json"], env);
      const checks = new Map((JSON.parse(doctor.stdout) as { checks: DoctorCheck[] }).checks.map((c) => [c.name, c]));
      expect(checks.get("credentials sso-a")).toMatchObject({ status: "fail", fix: "run `aws sso login --profile sso-a`" });
      expect(checks.get("credentials sso-a")!.detail).toContain("for orders");
      expect(checks.get("credentials sso-b")).toMatchObject({ status: "ok", detail: expect.stringMatching(/for billing, .*SSO session corp-b ends 20\d\d-/) });

      const login = await rdsd(["login", "--config", configPath], env);
      expect(login.code, login.stderr).toBe(0);
      expect(await awsCalls()).toEqual(["sso login --profile sso-a"]);
      expect(login.stdout).toContain("the daemon retried orders, orders-admin");
      await expect.poll(state, { timeout: 30_000 }).toEqual({ orders: "ready", billing: "ready", "orders-admin": "ready" });
      expect(world.sso.requests.some((r) => r.caller === "fresh-corp-a")).toBe(true);

      // Nothing expired: no login at all.
      const again = await rdsd(["login", "--config", configPath], env);
      expect(again.code).toBe(0);
      expect(again.stdout).toMatch(/SSO session corp-a .* is valid until/);
      expect(await awsCalls()).toEqual(["sso login --profile sso-a"]);

      // --all: every session once, valid or not.
      const all = await rdsd(["login", "--all", "--config", configPath], env);
      expect(all.code, all.stderr).toBe(0);
      expect((await awsCalls()).slice(1)).toEqual(["sso login --profile sso-a", "sso login --profile sso-b"]);
    } finally {
      expect(await daemon.stop()).toBe(0);
    }
  }, 120_000);
});
