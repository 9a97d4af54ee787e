import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { pgClientEnv, runCommand } from "@rdsd/testkit";
import type { ProbeReport } from "@rdsd/control";
import type { DoctorCheck } from "@rdsd/daemon";
import { ACCOUNT_A, ACCOUNT_B, daemonStatus, rdsd, startAccountsWorld, startDaemon, writeAccountsConfig, type AccountsWorld } from "./accounts-fixture.js";

// One daemon, two targets in two AWS accounts, each naming its own profile in a temporary AWS config and
// credentials file, with no AWS_* keys in the environment.

let world: AccountsWorld;
beforeAll(async () => {
  world = await startAccountsWorld();
});
afterAll(async () => {
  await world?.close();
});

function psql(port: number) {
  return runCommand("psql", ["-X", "-At", `host=127.0.0.1 port=${port} dbname=postgres`, "-c", "SELECT current_user"], { env: pgClientEnv({ PGCONNECT_TIMEOUT: "30" }) });
}

describe("one daemon, two accounts", () => {
  it("signs each target's SSM calls and IAM tokens with its own profile's key, and psql works through both", async () => {
    const { configPath, ports } = await writeAccountsConfig(world);
    const daemon = await startDaemon(configPath, world.env);
    try {
      const [a, b] = await Promise.all([psql(ports.a), psql(ports.b)]);
      expect(a.stderr).toBe("");
      expect(a.stdout.trim()).toBe(ACCOUNT_A.user);
      expect(b.stderr).toBe("");
      expect(b.stdout.trim()).toBe(ACCOUNT_B.user);

      // What the emulator received: each StartSession signed by its own account's key, on that account's bastion
      // (found by the same tag in both accounts, so DescribeInstanceInformation was answered per account too).
      const sessions = world.emulator.sessions({ active: true }).map((s) => ({ account: s.account, startedBy: s.startedBy, instanceId: s.instanceId, host: s.properties.host }));
      expect(sessions).toHaveLength(2);
      expect(sessions).toEqual(
        expect.arrayContaining([
          { account: ACCOUNT_A.account, startedBy: ACCOUNT_A.accessKeyId, instanceId: ACCOUNT_A.bastion, host: ACCOUNT_A.host },
          { account: ACCOUNT_B.account, startedBy: ACCOUNT_B.accessKeyId, instanceId: ACCOUNT_B.bastion, host: ACCOUNT_B.host },
        ]),
      );

      // Each token verifies with its own account's secret and with no other.
      expect(world.tokenChecks).toEqual(
        expect.arrayContaining([
          { host: ACCOUNT_A.host, user: ACCOUNT_A.user, verifiesWith: [ACCOUNT_A.account] },
          { host: ACCOUNT_B.host, user: ACCOUNT_B.user, verifiesWith: [ACCOUNT_B.account] },
        ]),
      );
      expect(world.tokenChecks.every((c) => c.verifiesWith.length === 1)).toBe(true);

      const status = await daemonStatus(world.env);
      expect(status.targets.map((t) => ({ name: t.name, profile: t.profile, region: t.region, state: t.state, sessions: t.sessionIds.length }))).toEqual([
        { name: "orders", profile: "account-a", region: "eu-west-2", state: "ready", sessions: 1 },
        { name: "billing", profile: "account-b", region: "eu-west-2", state: "ready", sessions: 1 },
      ]);

      // The table, `rdsd url --json` and `rdsd test` name each target's profile and region.
      const table = (await rdsd(["status"], world.env)).stdout;
      expect(table).toMatch(/^orders\s.*\saccount-a@eu-west-2\s/m);
      expect(table).toMatch(/^billing\s.*\saccount-b@eu-west-2\s/m);
      expect(JSON.parse((await rdsd(["url", "billing", "--json"], world.env)).stdout)).toMatchObject({ profile: "account-b", region: "eu-west-2" });
      const probe = JSON.parse((await rdsd(["test", "billing", "--json"], world.env)).stdout) as ProbeReport;
      expect(probe.ok, JSON.stringify(probe.stages)).toBe(true);
      expect(probe.stages.find((s) => s.name === "credentials")!.detail).toContain("(profile account-b, region eu-west-2)");

      // doctor: credentials per profile with the targets using each, region and bastion per target through its own profile.
      const doctor = await rdsd(["doctor", "--config", configPath, "--json"], world.env);
      const checks = new Map((JSON.parse(doctor.stdout) as { checks: DoctorCheck[] }).checks.map((c) => [c.name, c]));
      expect(checks.get("credentials account-a")).toMatchObject({ status: "ok", detail: expect.stringMatching(new RegExp(`access key \\.\\.\\.${ACCOUNT_A.accessKeyId.slice(-4)} from profile account-a for orders,`)) });
      expect(checks.get("credentials account-b")).toMatchObject({ status: "ok", detail: expect.stringMatching(new RegExp(`access key \\.\\.\\.${ACCOUNT_B.accessKeyId.slice(-4)} from profile account-b for billing,`)) });
      expect(checks.get("region orders")).toMatchObject({ status: "ok", detail: "eu-west-2 (from profile, profile account-a)" });
      expect(checks.get("bastion orders")).toMatchObject({ status: "ok", detail: expect.stringContaining(ACCOUNT_A.bastion) });
      expect(checks.get("bastion billing")).toMatchObject({ status: "ok", detail: expect.stringContaining(ACCOUNT_B.bastion) });
    } finally {
      expect(await daemon.stop()).toBe(0);
    }
    expect(world.emulator.sessions({ active: true })).toEqual([]);
  }, 90_000);
});
