import {
  DescribeInstanceInformationCommand,
  ResumeSessionCommand,
  SSMClient,
  StartSessionCommand,
  TerminateSessionCommand,
} from "@aws-sdk/client-ssm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DEFAULT_INSTANCE, startEmulator } from "./emulator.js";
import type { Emulator } from "./emulator.js";

const RDS = "orders-dev.abc123xyz.eu-west-2.rds.amazonaws.com";
let emulator: Emulator;

function client(overrides: { accessKeyId?: string; secretAccessKey?: string; region?: string } = {}): SSMClient {
  return new SSMClient({
    endpoint: emulator.endpoint,
    region: overrides.region ?? emulator.region,
    credentials: {
      accessKeyId: overrides.accessKeyId ?? emulator.credentials.accessKeyId,
      secretAccessKey: overrides.secretAccessKey ?? emulator.credentials.secretAccessKey,
    },
    maxAttempts: 1,
  });
}

const startInput = (over: Record<string, unknown> = {}) => ({
  Target: DEFAULT_INSTANCE.instanceId,
  DocumentName: "AWS-StartPortForwardingSessionToRemoteHost",
  Parameters: { host: [RDS], portNumber: ["5432"], localPortNumber: ["0"] },
  ...over,
});

async function errorName(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    return (err as Error).name;
  }
  return "no error";
}

beforeAll(async () => {
  emulator = await startEmulator({
    hostMap: [`${RDS}=127.0.0.1:5544`],
    instances: [
      DEFAULT_INSTANCE,
      { instanceId: "i-0aaaaaaaaaaaaaaaa", tags: { Name: "other", env: "dev" } },
      { instanceId: "i-0bbbbbbbbbbbbbbbb", tags: { env: "dev" }, online: false },
    ],
    credentials: [
      { accessKeyId: "AKIDEMULATOR00000001", secretAccessKey: "emulator-secret-1" },
      { accessKeyId: "AKIDEMULATORDENIED01", secretAccessKey: "emulator-secret-2", deniedOperations: ["StartSession"] },
    ],
  });
});
afterAll(async () => {
  await emulator.close();
});

describe("SSM API through the real AWS SDK", () => {
  it("starts, resumes and terminates a port forwarding session", async () => {
    const ssm = client();
    const started = await ssm.send(new StartSessionCommand(startInput()));
    expect(started.SessionId).toMatch(/^rdsd-emulator-[0-9a-f]{17}$/);
    expect(started.TokenValue!.length).toBeGreaterThan(20);
    expect(started.StreamUrl).toBe(`ws://127.0.0.1:${emulator.port}/v1/data-channel/${started.SessionId}?role=publish_subscribe`);
    const info = emulator.session(started.SessionId!)!;
    expect(info.properties).toEqual({ portNumber: "5432", type: "LocalPortForwarding", host: RDS, localPortNumber: "0" });
    expect(info.destination).toEqual({ host: "127.0.0.1", port: 5544 });

    const resumed = await ssm.send(new ResumeSessionCommand({ SessionId: started.SessionId }));
    expect(resumed.TokenValue).not.toBe(started.TokenValue);
    expect(resumed.StreamUrl).toBe(started.StreamUrl);

    const terminated = await ssm.send(new TerminateSessionCommand({ SessionId: started.SessionId }));
    expect(terminated.SessionId).toBe(started.SessionId);
    expect(emulator.session(started.SessionId!)!.state).toBe("Terminated");
    // A finished session resumes with no token (the official client then reports a timeout).
    const after = await ssm.send(new ResumeSessionCommand({ SessionId: started.SessionId }));
    expect(after.TokenValue).toBeUndefined();
    expect(await errorName(ssm.send(new ResumeSessionCommand({ SessionId: "rdsd-emulator-00000000000000000" })))).toBe("DoesNotExistException");
  });

  it("accepts AWS-StartPortForwardingSession and fills the document's defaults", async () => {
    const started = await client().send(
      new StartSessionCommand({ Target: DEFAULT_INSTANCE.instanceId, DocumentName: "AWS-StartPortForwardingSession", Parameters: { portNumber: ["8080"] } }),
    );
    expect(emulator.session(started.SessionId!)!.properties).toEqual({ portNumber: "8080", type: "LocalPortForwarding", localPortNumber: "0" });
    expect(emulator.session(started.SessionId!)!.destination).toEqual({ host: "localhost", port: 8080 });
  });

  it("validates Target, DocumentName and Parameters the way the service does", async () => {
    const ssm = client();
    expect(await errorName(ssm.send(new StartSessionCommand(startInput({ Target: "i-0123456789abcdef9" }))))).toBe("TargetNotConnected");
    expect(await errorName(ssm.send(new StartSessionCommand(startInput({ Target: "i-0bbbbbbbbbbbbbbbb" }))))).toBe("TargetNotConnected");
    expect(await errorName(ssm.send(new StartSessionCommand(startInput({ DocumentName: "AWS-NoSuchDocument" }))))).toBe("InvalidDocument");
    expect(await errorName(ssm.send(new StartSessionCommand(startInput({ DocumentName: "x" }))))).toBe("ValidationException");
    expect(await errorName(ssm.send(new StartSessionCommand(startInput({ DocumentName: undefined }))))).toBe("InvalidDocument");
    expect(await errorName(ssm.send(new StartSessionCommand(startInput({ Parameters: { portNumber: ["5432"] } }))))).toBe("InvalidParameters");
    expect(await errorName(ssm.send(new StartSessionCommand(startInput({ Parameters: { host: [RDS], portNumber: ["99999"] } }))))).toBe(
      "InvalidParameters",
    );
    expect(await errorName(ssm.send(new StartSessionCommand(startInput({ Parameters: { host: [RDS], color: ["red"] } }))))).toBe(
      "InvalidParameters",
    );
    expect(await errorName(ssm.send(new StartSessionCommand({ Target: undefined as unknown as string })))).toBe("ValidationException");
    expect(emulator.sessions({ active: true }).every((s) => s.documentName.startsWith("AWS-StartPortForwarding"))).toBe(true);
  });

  it("refuses unknown keys, bad signatures, other regions and denied identities", async () => {
    const start = new StartSessionCommand(startInput());
    expect(await errorName(client({ accessKeyId: "AKIDEMULATORUNKNOWN1" }).send(start))).toBe("UnrecognizedClientException");
    expect(await errorName(client({ secretAccessKey: "wrong" }).send(start))).toBe("InvalidSignatureException");
    expect(await errorName(client({ region: "us-east-1" }).send(start))).toBe("InvalidSignatureException");
    const denied = client({ accessKeyId: "AKIDEMULATORDENIED01", secretAccessKey: "emulator-secret-2" });
    const err = await denied.send(start).catch((e: Error) => e);
    expect((err as Error).name).toBe("AccessDeniedException");
    expect((err as Error).message).toMatch(/not authorized to perform: ssm:StartSession/);
    // The same identity may call what it is not denied.
    const list = await denied.send(new DescribeInstanceInformationCommand({}));
    expect(list.InstanceInformationList?.length).toBe(3);
  });

  it("refuses a request without a SigV4 Authorization header", async () => {
    const res = await fetch(emulator.endpoint, {
      method: "POST",
      headers: { "content-type": "application/x-amz-json-1.1", "x-amz-target": "AmazonSSM.StartSession" },
      body: JSON.stringify(startInput()),
    });
    expect(res.status).toBe(400);
    expect(await res.json()).toEqual({ __type: "MissingAuthenticationTokenException", message: "Missing Authentication Token" });
  });

  it("describes instances with tag and InstanceIds filters and ping status", async () => {
    const ssm = client();
    const byTag = await ssm.send(new DescribeInstanceInformationCommand({ Filters: [{ Key: "tag:env", Values: ["dev"] }] }));
    expect(byTag.InstanceInformationList!.map((i) => [i.InstanceId, i.PingStatus])).toEqual([
      ["i-0aaaaaaaaaaaaaaaa", "Online"],
      ["i-0bbbbbbbbbbbbbbbb", "ConnectionLost"],
    ]);
    const byId = await ssm.send(
      new DescribeInstanceInformationCommand({ Filters: [{ Key: "InstanceIds", Values: [DEFAULT_INSTANCE.instanceId] }] }),
    );
    expect(byId.InstanceInformationList!.map((i) => i.InstanceId)).toEqual([DEFAULT_INSTANCE.instanceId]);
    expect(byId.InstanceInformationList![0]!.LastPingDateTime).toBeInstanceOf(Date);
    const legacy = await ssm.send(
      new DescribeInstanceInformationCommand({ InstanceInformationFilterList: [{ key: "PingStatus", valueSet: ["ConnectionLost"] }] }),
    );
    expect(legacy.InstanceInformationList!.map((i) => i.InstanceId)).toEqual(["i-0bbbbbbbbbbbbbbbb"]);
    expect(await errorName(ssm.send(new DescribeInstanceInformationCommand({ Filters: [{ Key: "Color", Values: ["x"] }] })))).toBe(
      "InvalidFilterKey",
    );
    emulator.setInstanceOnline("i-0bbbbbbbbbbbbbbbb", true);
    const online = await ssm.send(new DescribeInstanceInformationCommand({ Filters: [{ Key: "PingStatus", Values: ["Online"] }] }));
    expect(online.InstanceInformationList!.length).toBe(3);
    emulator.setInstanceOnline("i-0bbbbbbbbbbbbbbbb", false);
  });

  it("pages with MaxResults and NextToken", async () => {
    const ssm = client();
    for (let i = 0; i < 6; i++) emulator.addInstance({ instanceId: `i-0c${String(i).padStart(15, "0")}` });
    const first = await ssm.send(new DescribeInstanceInformationCommand({ MaxResults: 5 }));
    expect(first.InstanceInformationList!.length).toBe(5);
    const second = await ssm.send(new DescribeInstanceInformationCommand({ MaxResults: 5, NextToken: first.NextToken }));
    expect(second.InstanceInformationList!.length).toBe(4);
    expect(second.NextToken).toBeUndefined();
  });
});
