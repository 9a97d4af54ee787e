import { appendFile } from "node:fs/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { DoctorCheck } from "@rdsd/daemon";
import { freePort, pgClientEnv, runCommand } from "@rdsd/testkit";
import { ACCOUNT_A, daemonStatus, rdsd, startAccountsWorld, startDaemon, writeAccountsConfig, type AccountsWorld } from "./accounts-fixture.js";

// A profile whose region (in a temporary AWS config file) is not the one an RDS host's name carries: the target's
// SSM calls would go to the wrong region. Refused at target start and by doctor, with the fix; a target whose host
// is not an RDS name uses the profile's region as before.

const PROFILE = "account-a-us-east";
let world: AccountsWorld;

beforeAll(async () => {
  world = await startAccountsWorld();
  await appendFile(world.awsConfigFile, `[profile ${PROFILE}]\nregion = us-east-1\nservices = emulator-ssm\n`);
  await appendFile(world.awsCredentialsFile, `\n[${PROFILE}]\naws_access_key_id = ${ACCOUNT_A.accessKeyId}\naws_secret_access_key = ${ACCOUNT_A.secretAccessKey}\n`);
});
afterAll(async () => {
  await world?.close();
});

describe("a profile's region that disagrees with the RDS host's", () => {
  it("refuses that target with the fix (status, its clients, doctor); other targets and non-RDS hosts are not refused", async () => {
    const internalPort = await freePort();
    const { configPath, ports } = await writeAccountsConfig(world, {
      profiles: { a: PROFILE, b: "account-b" },
      extraTargets: ["  internal:", "    host: orders.db.internal", `    listen: "127.0.0.1:${internalPort}"`, `    user: ${ACCOUNT_A.user}`, "    database: postgres", `    aws: { profile: ${PROFILE} }`],
    });
    const expected = {
      message: `target orders: region us-east-1 (of profile ${PROFILE} in ${world.awsConfigFile}) does not match its host ${ACCOUNT_A.host}, which is in eu-west-2`,
      fix: `set aws: { region: eu-west-2 } on target orders in the rdsd config (then \`rdsd reload\`), or correct the profile's region (\`aws configure set region eu-west-2 --profile ${PROFILE}\`, then \`rdsd restart orders\`)`,
    };
    const daemon = await startDaemon(configPath, world.env);
    try {
      const byName = async () => new Map((await daemonStatus(world.env)).targets.map((t) => [t.name, t]));
      const targets = await byName();
      expect(targets.get("orders")).toMatchObject({ state: "failed", lastError: expected });
      // Not an RDS name: nothing to contradict the profile's region, so no refusal (the emulator, which serves
      // eu-west-2 only, keeps it retrying instead).
      expect(targets.get("internal")!.state).not.toBe("failed");
      expect(targets.get("internal")!.region).toBe("us-east-1");
      await expect.poll(async () => (await byName()).get("billing")!.state, { timeout: 30_000 }).toBe("ready");

      const client = await runCommand("psql", ["-X", "-At", `host=127.0.0.1 port=${ports.a} dbname=postgres`, "-c", "SELECT 1"], { env: pgClientEnv({ PGCONNECT_TIMEOUT: "30" }) });
      expect(client.code).not.toBe(0);
      expect(client.stderr).toContain(expected.message);
      expect(client.stderr).toContain(expected.fix);

      const doctor = await rdsd(["doctor", "--config", configPath, "--json"], world.env);
      const checks = new Map((JSON.parse(doctor.stdout) as { checks: DoctorCheck[] }).checks.map((c) => [c.name, c]));
      expect(doctor.code).not.toBe(0);
      expect(checks.get("region orders")).toMatchObject({ status: "fail", detail: expected.message, fix: expected.fix });
      expect(checks.get("region billing")).toMatchObject({ status: "ok", detail: "eu-west-2 (from profile, profile account-b)" });
      expect(checks.get("region internal")).toMatchObject({ status: "ok", detail: `us-east-1 (from profile, profile ${PROFILE})` });
    } finally {
      expect(await daemon.stop()).toBe(0);
    }
  }, 90_000);
});
