import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { regionConflict, regionFromRdsHostname, RegionNotFoundError, resolveRegion } from "./region.js";

describe("regionFromRdsHostname", () => {
  it.each([
    ["orders-dev.abc123xyz.eu-west-2.rds.amazonaws.com", "eu-west-2"],
    ["billing.cluster-c9akciq32.us-east-1.rds.amazonaws.com", "us-east-1"],
    ["billing.cluster-ro-c9akciq32.ap-southeast-2.rds.amazonaws.com", "ap-southeast-2"],
    ["analytics.cluster-custom-c9akciq32.eu-central-1.rds.amazonaws.com", "eu-central-1"],
    ["app-proxy.proxy-c9akciq32.ca-central-1.rds.amazonaws.com", "ca-central-1"],
    ["readers.endpoint.proxy-c9akciq32.sa-east-1.rds.amazonaws.com", "sa-east-1"],
    ["orders.abc123xyz.cn-north-1.rds.amazonaws.com.cn", "cn-north-1"],
    ["orders.cluster-abc123xyz.cn-northwest-1.rds.amazonaws.com.cn", "cn-northwest-1"],
    ["orders.abc123xyz.us-gov-west-1.rds.amazonaws.com", "us-gov-west-1"],
    ["Orders-Dev.ABC123XYZ.EU-WEST-2.RDS.AMAZONAWS.COM.", "eu-west-2"],
  ])("%s -> %s", (host, region) => {
    expect(regionFromRdsHostname(host)).toBe(region);
  });

  it.each([
    "localhost",
    "127.0.0.1",
    "db.internal.example.com",
    "eu-west-2.rds.amazonaws.com", // no instance and hash labels
    "orders.eu-west-2.rds.amazonaws.com", // only one label before the region
    "orders.abc.notaregion.rds.amazonaws.com",
    "orders.abc.eu-west-2.rds.amazonaws.com.evil.example",
    "orders.abc.eu-west-2.rds.amazonaws.org",
  ])("%s is not an RDS endpoint", (host) => {
    expect(regionFromRdsHostname(host)).toBeUndefined();
  });
});

describe("resolveRegion", () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), "rdsd-region-"));
    vi.stubEnv("HOME", dir);
    vi.stubEnv("AWS_CONFIG_FILE", join(dir, "config"));
    vi.stubEnv("AWS_SHARED_CREDENTIALS_FILE", join(dir, "credentials"));
    for (const name of ["AWS_PROFILE", "AWS_REGION", "AWS_DEFAULT_REGION"]) vi.stubEnv(name, undefined);
    writeFileSync(join(dir, "config"), "[default]\nregion = eu-north-1\n\n[profile dev-sso]\nregion = eu-west-1\n\n[profile bare]\noutput = json\n");
  });
  afterEach(() => {
    vi.unstubAllEnvs();
    rmSync(dir, { recursive: true, force: true });
  });

  const host = "orders-dev.abc123xyz.eu-west-2.rds.amazonaws.com";

  it("prefers the rdsd config, then the profile's region, then AWS_REGION, then AWS_DEFAULT_REGION, then the hostname", async () => {
    const env = { AWS_REGION: "us-east-1", AWS_DEFAULT_REGION: "us-west-2" };
    expect(await resolveRegion({ region: "ap-south-1", profile: "dev-sso", host, env })).toEqual({ region: "ap-south-1", source: "explicit" });
    // A profile's own region beats the environment: one daemon serves profiles in different regions.
    expect(await resolveRegion({ profile: "dev-sso", host, env })).toEqual({ region: "eu-west-1", source: "profile" });
    expect(await resolveRegion({ host, env })).toEqual({ region: "eu-north-1", source: "profile" }); // [default]
    expect(await resolveRegion({ profile: "bare", host, env })).toEqual({ region: "us-east-1", source: "AWS_REGION" });
    expect(await resolveRegion({ profile: "bare", host, env: { AWS_DEFAULT_REGION: "us-west-2" } })).toEqual({
      region: "us-west-2",
      source: "AWS_DEFAULT_REGION",
    });
    expect(await resolveRegion({ profile: "bare", host, env: {} })).toEqual({ region: "eu-west-2", source: "hostname" });
  });

  it("reads process.env by default and follows AWS_PROFILE", async () => {
    vi.stubEnv("AWS_PROFILE", "dev-sso");
    expect(await resolveRegion({ host })).toEqual({ region: "eu-west-1", source: "profile" });
    vi.stubEnv("AWS_PROFILE", "bare");
    vi.stubEnv("AWS_DEFAULT_REGION", "us-west-1");
    expect(await resolveRegion({ host })).toEqual({ region: "us-west-1", source: "AWS_DEFAULT_REGION" });
  });

  it("sees edits to the config file made after the first lookup", async () => {
    expect((await resolveRegion({ profile: "bare", env: {}, host })).source).toBe("hostname");
    writeFileSync(join(dir, "config"), "[profile bare]\nregion = me-south-1\n");
    expect(await resolveRegion({ profile: "bare", env: {} })).toEqual({ region: "me-south-1", source: "profile" });
  });

  it("says what it checked and how to fix it when nothing names a region", async () => {
    const error = await resolveRegion({ profile: "bare", host: "db.internal.example.com", env: {} }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(RegionNotFoundError);
    const { message, fix } = error as RegionNotFoundError;
    expect(message).toContain(`region of profile bare in ${join(dir, "config")}`);
    expect(message).toContain("host db.internal.example.com is not an RDS endpoint name");
    expect(fix).toBe("set aws.region in the rdsd config, or AWS_REGION, or `aws configure set region <region> --profile bare`");
  });

  it("regionConflict: a region from the profile or the environment that is not the RDS host's, with the fix", async () => {
    const target = { name: "orders", host, profile: "dev-sso" };
    // dev-sso's region (eu-west-1) is not the host's (eu-west-2).
    expect(regionConflict(await resolveRegion({ profile: "dev-sso", host, env: {} }), target)).toEqual({
      message: `target orders: region eu-west-1 (of profile dev-sso in ${join(dir, "config")}) does not match its host ${host}, which is in eu-west-2`,
      fix: "set aws: { region: eu-west-2 } on target orders in the rdsd config (then `rdsd reload`), or correct the profile's region (`aws configure set region eu-west-2 --profile dev-sso`, then `rdsd restart orders`)",
    });
    // The default chain's profile is named as the AWS CLI names it.
    expect(regionConflict(await resolveRegion({ host, env: {} }), { name: "orders", host })?.fix).toContain("--profile default");
    expect(regionConflict({ region: "us-east-1", source: "AWS_REGION" }, target)).toEqual({
      message: `target orders: region us-east-1 (from AWS_REGION) does not match its host ${host}, which is in eu-west-2`,
      fix: "set aws: { region: eu-west-2 } on target orders in the rdsd config (then `rdsd reload`), or set AWS_REGION to eu-west-2 in the daemon's environment and restart the daemon",
    });
    // Agreeing, written in the rdsd config (checked at load), taken from the host, or a host that is not an RDS name: no conflict.
    expect(regionConflict({ region: "eu-west-2", source: "profile" }, target)).toBeUndefined();
    expect(regionConflict({ region: "ap-south-1", source: "explicit" }, target)).toBeUndefined();
    expect(regionConflict({ region: "eu-west-2", source: "hostname" }, target)).toBeUndefined();
    expect(regionConflict({ region: "eu-west-1", source: "profile" }, { ...target, host: "db.internal.example.com" })).toBeUndefined();
  });

  it("refuses a value that is not a region name", async () => {
    await expect(resolveRegion({ region: "Ireland", env: {} })).rejects.toThrow(/"Ireland" \(from the rdsd config\) is not a region name/);
    await expect(resolveRegion({ profile: "bare", env: { AWS_REGION: "eu west 2" } })).rejects.toThrow(/from AWS_REGION/);
  });
});
