import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { configuredEndpoint } from "./endpoints.js";

// What the SDK's shared-config loader reads for each profile; the files are real, in a temporary directory.
let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "rdsd-endpoints-"));
  vi.stubEnv("AWS_CONFIG_FILE", join(dir, "config"));
  vi.stubEnv("AWS_SHARED_CREDENTIALS_FILE", join(dir, "credentials"));
  for (const name of ["AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_SSM", "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS"]) vi.stubEnv(name, undefined);
  writeFileSync(
    join(dir, "config"),
    [
      "[profile plain]",
      "region = eu-west-2",
      "[profile global-url]",
      "endpoint_url = http://127.0.0.1:4001",
      "[profile with-services]",
      "endpoint_url = http://127.0.0.1:4001",
      "services = local-ssm",
      "[profile services-other-service]",
      "services = local-sts",
      "endpoint_url = http://127.0.0.1:4003",
      "[profile ignoring]",
      "endpoint_url = http://127.0.0.1:4001",
      "ignore_configured_endpoint_urls = true",
      "[profile missing-services]",
      "services = nowhere",
      "[services local-ssm]",
      "ssm =",
      "  endpoint_url = http://127.0.0.1:4002",
      "[services local-sts]",
      "sts =",
      "  endpoint_url = http://127.0.0.1:4004",
      "",
    ].join("\n"),
  );
});
afterEach(() => {
  vi.unstubAllEnvs();
  rmSync(dir, { recursive: true, force: true });
});

describe("configuredEndpoint", () => {
  it("reads each profile's own endpoint_url and services section", async () => {
    expect(await configuredEndpoint("SSM", "plain")).toBeUndefined();
    expect(await configuredEndpoint("SSM", "global-url")).toBe("http://127.0.0.1:4001");
    expect(await configuredEndpoint("SSM", "with-services")).toBe("http://127.0.0.1:4002");
    expect(await configuredEndpoint("SSM", "services-other-service")).toBe("http://127.0.0.1:4003");
    expect(await configuredEndpoint("SSM", "ignoring")).toBeUndefined();
    expect(await configuredEndpoint("SSM", "missing-services")).toBeUndefined();
  });

  it("lets AWS_ENDPOINT_URL_SSM, then AWS_ENDPOINT_URL, win for every profile", async () => {
    vi.stubEnv("AWS_ENDPOINT_URL", "http://127.0.0.1:5001");
    expect(await configuredEndpoint("SSM", "with-services")).toBe("http://127.0.0.1:5001");
    vi.stubEnv("AWS_ENDPOINT_URL_SSM", "http://127.0.0.1:5002");
    expect(await configuredEndpoint("SSM", "plain")).toBe("http://127.0.0.1:5002");
    expect(await configuredEndpoint("SSM", "global-url")).toBe("http://127.0.0.1:5002");
  });

  it("sees edits made after the first read", async () => {
    expect(await configuredEndpoint("SSM", "plain")).toBeUndefined();
    writeFileSync(join(dir, "config"), "[profile plain]\nendpoint_url = http://127.0.0.1:4009\n");
    expect(await configuredEndpoint("SSM", "plain")).toBe("http://127.0.0.1:4009");
  });
});
