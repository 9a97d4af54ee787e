import { DescribeInstanceInformationCommand, ResumeSessionCommand, SSMClient, StartSessionCommand, TerminateSessionCommand } from "@aws-sdk/client-ssm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startEmulator } from "./emulator.js";
import type { Emulator } from "./emulator.js";

// Several accounts in one emulator, as one daemon with two profiles sees AWS: each key belongs to an account,
// and an account sees only its own instances and sessions.

const RDS = "orders-dev.abc123xyz.eu-west-2.rds.amazonaws.com";
const ACCOUNT_A = { accessKeyId: "AKIDEMULATORACCOUNTA", secretAccessKey: "emulator-secret-account-a", account: "111111111111" };
const ACCOUNT_B = { accessKeyId: "AKIDEMULATORACCOUNTB", secretAccessKey: "emulator-secret-account-b", account: "222222222222" };
const BASTION_A = "i-0aaaaaaaaaaaaaaa1";
const BASTION_B = "i-0bbbbbbbbbbbbbbb2";
let emulator: Emulator;

function client(keys: { accessKeyId: string; secretAccessKey: string }): SSMClient {
  return new SSMClient({ endpoint: emulator.endpoint, region: emulator.region, credentials: keys, maxAttempts: 1 });
}

const start = (keys: typeof ACCOUNT_A, target: string) =>
  client(keys).send(
    new StartSessionCommand({
      Target: target,
      DocumentName: "AWS-StartPortForwardingSessionToRemoteHost",
      Parameters: { host: [RDS], portNumber: ["5432"], localPortNumber: ["0"] },
    }),
  );

beforeAll(async () => {
  emulator = await startEmulator({
    credentials: [ACCOUNT_A, ACCOUNT_B],
    instances: [
      { instanceId: BASTION_A, tags: { Name: "db-bastion" } }, // the first key's account
      { instanceId: BASTION_B, tags: { Name: "db-bastion" }, account: ACCOUNT_B.account },
    ],
    hostMap: [`${RDS}=127.0.0.1:5544`],
  });
});
afterAll(async () => {
  await emulator.close();
});

describe("accounts", () => {
  it("lists to each account only its own instances", async () => {
    const list = async (keys: typeof ACCOUNT_A) =>
      ((await client(keys).send(new DescribeInstanceInformationCommand({ Filters: [{ Key: "tag:Name", Values: ["db-bastion"] }] }))).InstanceInformationList ?? []).map((i) => i.InstanceId);
    expect(await list(ACCOUNT_A)).toEqual([BASTION_A]);
    expect(await list(ACCOUNT_B)).toEqual([BASTION_B]);
    expect(emulator.instances().map((i) => [i.instanceId, i.account])).toEqual([
      [BASTION_A, ACCOUNT_A.account],
      [BASTION_B, ACCOUNT_B.account],
    ]);
  });

  it("starts sessions only on the caller's own instances, and records which key signed StartSession", async () => {
    await expect(start(ACCOUNT_B, BASTION_A)).rejects.toMatchObject({ name: "TargetNotConnected" });
    const out = await start(ACCOUNT_A, BASTION_A);
    expect(emulator.session(out.SessionId!)).toMatchObject({ account: ACCOUNT_A.account, startedBy: ACCOUNT_A.accessKeyId, instanceId: BASTION_A });
  });

  it("does not let another account resume or terminate a session", async () => {
    const out = await start(ACCOUNT_A, BASTION_A);
    const id = out.SessionId!;
    await expect(client(ACCOUNT_B).send(new ResumeSessionCommand({ SessionId: id }))).rejects.toMatchObject({ name: "DoesNotExistException" });
    await client(ACCOUNT_B).send(new TerminateSessionCommand({ SessionId: id }));
    expect(emulator.session(id)!.state).not.toBe("Terminated");
    expect((await client(ACCOUNT_A).send(new ResumeSessionCommand({ SessionId: id }))).TokenValue).toBeTruthy();
    await client(ACCOUNT_A).send(new TerminateSessionCommand({ SessionId: id }));
    expect(emulator.session(id)!.state).toBe("Terminated");
  });
});
