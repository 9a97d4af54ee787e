import { execFileSync, spawn } from "node:child_process";
import { once } from "node:events";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { DescribeInstanceInformationCommand, SSMClient } from "@aws-sdk/client-ssm";
import { describe, expect, it } from "vitest";
import { parseCommandLine } from "./cli.js";

const packageDir = fileURLToPath(new URL("..", import.meta.url));
const repoRoot = fileURLToPath(new URL("../../..", import.meta.url));

describe("command line", () => {
  it("parses every documented option", () => {
    const { options } = parseCommandLine([
      "--port",
      "0",
      "--map",
      "orders-dev.abc123xyz.eu-west-2.rds.amazonaws.com=127.0.0.1:5544",
      "--map",
      "other.rds.amazonaws.com:5432=127.0.0.2:6000",
      "--instance",
      "i-0123456789abcdef0,tag:Name=bastion,tag:env=dev",
      "--instance",
      "i-0aaaaaaaaaaaaaaaa",
      "--agent-version",
      "3.0.196.0",
      "--no-pacing",
    ]);
    expect(options).toEqual({
      port: 0,
      hostMap: [
        { from: "orders-dev.abc123xyz.eu-west-2.rds.amazonaws.com", to: "127.0.0.1:5544" },
        { from: "other.rds.amazonaws.com:5432", to: "127.0.0.2:6000" },
      ],
      instances: [
        { instanceId: "i-0123456789abcdef0", tags: { Name: "bastion", env: "dev" } },
        { instanceId: "i-0aaaaaaaaaaaaaaaa", tags: {} },
      ],
      agentVersion: "3.0.196.0",
      pacing: false,
    });
  });

  it("gives each --account its own key, and instances their account", () => {
    const { options } = parseCommandLine(["--account", "111111111111", "--account", "222222222222", "--instance", "i-0123456789abcdef0,tag:Name=bastion,account:222222222222"]);
    expect(options.credentials).toEqual([
      { accessKeyId: "AKIDEMULATOR11111111", secretAccessKey: "emulator-secret-not-a-real-aws-secret-111111111111", account: "111111111111" },
      { accessKeyId: "AKIDEMULATOR22222222", secretAccessKey: "emulator-secret-not-a-real-aws-secret-222222222222", account: "222222222222" },
    ]);
    expect(options.instances).toEqual([{ instanceId: "i-0123456789abcdef0", tags: { Name: "bastion" }, account: "222222222222" }]);
    expect(() => parseCommandLine(["--account", "1234"])).toThrow(/--account wants a 12-digit account id/);
  });

  it("rejects bad input with a clear message", () => {
    expect(() => parseCommandLine(["--port", "http"])).toThrow(/--port/);
    expect(() => parseCommandLine(["--map", "db=10.1.2.3:5432"])).toThrow(/loopback/);
    expect(() => parseCommandLine(["--instance", "bastion"])).toThrow(/--instance/);
    expect(() => parseCommandLine(["--instance", "i-0123456789abcdef0,env=dev"])).toThrow(/tag:KEY=VALUE/);
    expect(() => parseCommandLine(["--agent-version", "3"])).toThrow(/a\.b\.c\.d/);
    expect(() => parseCommandLine(["--bogus"])).toThrow();
  });

  it("runs standalone: first stdout line is the client JSON, the admin API answers, SIGINT stops it", { timeout: 60_000 }, async () => {
    // The bin runs the compiled code: build this package (incremental, quick when up to date).
    execFileSync(process.execPath, [`${repoRoot}node_modules/typescript/bin/tsc`, "-b", packageDir], { stdio: "inherit" });
    const child = spawn(process.execPath, [`${packageDir}bin/rdsd-emulator.js`, "--port", "0", "--instance", "i-0123456789abcdef0,tag:Name=bastion", "--no-pacing"], {
      stdio: ["ignore", "pipe", "inherit"],
    });
    try {
      const lines = createInterface({ input: child.stdout! });
      const [first] = (await once(lines, "line")) as [string];
      const config = JSON.parse(first) as { endpoint: string; region: string; accessKeyId: string; secretAccessKey: string };
      expect(Object.keys(config)).toEqual(["endpoint", "region", "accessKeyId", "secretAccessKey"]);
      expect(config.endpoint).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
      expect(config.accessKeyId).not.toMatch(/AKIA[0-9A-Z]{16}/);
      const ssm = new SSMClient({ endpoint: config.endpoint, region: config.region, credentials: config, maxAttempts: 1 });
      const listed = await ssm.send(new DescribeInstanceInformationCommand({ Filters: [{ Key: "tag:Name", Values: ["bastion"] }] }));
      expect(listed.InstanceInformationList!.map((i) => i.InstanceId)).toEqual(["i-0123456789abcdef0"]);
      const state = (await (await fetch(`${config.endpoint}/_admin/state`)).json()) as { sessions: unknown[] };
      expect(state.sessions).toEqual([]);
    } finally {
      const exited = once(child, "exit");
      child.kill("SIGINT");
      const [code] = await exited;
      expect(code).toBe(0);
    }
  });
});
