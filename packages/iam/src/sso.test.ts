import { createHash } from "node:crypto";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { ssoSessionExpired, ssoSessionFor } from "./sso.js";

// Which SSO session a profile depends on, and when `aws sso login`'s cached token ends: real files in a
// temporary HOME, read through the SDK's loaders.
let home: string;
const cache = (id: string, expiresAt: string) =>
  writeFileSync(join(home, ".aws", "sso", "cache", `${createHash("sha1").update(id).digest("hex")}.json`), JSON.stringify({ accessToken: "t", expiresAt }));

beforeEach(() => {
  home = mkdtempSync(join(tmpdir(), "rdsd-sso-"));
  mkdirSync(join(home, ".aws", "sso", "cache"), { recursive: true });
  vi.stubEnv("HOME", home);
  vi.stubEnv("AWS_CONFIG_FILE", join(home, ".aws", "config"));
  vi.stubEnv("AWS_SHARED_CREDENTIALS_FILE", join(home, ".aws", "credentials"));
  vi.stubEnv("AWS_PROFILE", undefined);
  writeFileSync(
    join(home, ".aws", "config"),
    [
      "[profile dev]",
      "sso_session = corp",
      "sso_account_id = 111111111111",
      "sso_role_name = Dev",
      "[sso-session corp]",
      "sso_start_url = https://corp.awsapps.com/start",
      "sso_region = eu-west-1",
      "[profile legacy]",
      "sso_start_url = https://legacy.awsapps.com/start",
      "sso_region = eu-west-1",
      "sso_account_id = 111111111111",
      "sso_role_name = Dev",
      "[profile admin]",
      "role_arn = arn:aws:iam::222222222222:role/Admin",
      "source_profile = dev",
      "[profile static]",
      "region = eu-west-2",
      "[profile loop]",
      "role_arn = arn:aws:iam::222222222222:role/Admin",
      "source_profile = loop",
      "",
    ].join("\n"),
  );
  writeFileSync(join(home, ".aws", "credentials"), "[static]\naws_access_key_id = AKIDTESTSTATIC000001\naws_secret_access_key = x\n");
});
afterEach(() => {
  vi.unstubAllEnvs();
  rmSync(home, { recursive: true, force: true });
});

describe("ssoSessionFor", () => {
  it("finds an sso-session profile's session and its cached token's end", async () => {
    cache("corp", "2030-01-01T00:00:00Z");
    const state = await ssoSessionFor("dev");
    expect(state).toEqual({ profile: "dev", loginProfile: "dev", session: "corp", expiresAt: new Date("2030-01-01T00:00:00Z") });
    expect(ssoSessionExpired(state!, new Date("2029-12-31T23:59:59Z"))).toBe(false);
    expect(ssoSessionExpired(state!, new Date("2030-01-01T00:00:00Z"))).toBe(true);
  });

  it("keys a legacy profile by its start URL, and says when nobody logged in", async () => {
    expect(await ssoSessionFor("legacy")).toEqual({ profile: "legacy", loginProfile: "legacy", session: "https://legacy.awsapps.com/start", expiresAt: null });
    cache("https://legacy.awsapps.com/start", "2030-01-01T00:00:00Z");
    expect((await ssoSessionFor("legacy"))?.expiresAt).toEqual(new Date("2030-01-01T00:00:00Z"));
  });

  it("follows a role profile to its SSO source_profile, and follows AWS_PROFILE for no profile", async () => {
    expect(await ssoSessionFor("admin")).toMatchObject({ profile: "admin", loginProfile: "dev", session: "corp" });
    vi.stubEnv("AWS_PROFILE", "admin");
    expect(await ssoSessionFor(undefined)).toMatchObject({ profile: "admin", loginProfile: "dev" });
  });

  it("is undefined for profiles without SSO, missing profiles and source_profile loops", async () => {
    expect(await ssoSessionFor("static")).toBeUndefined();
    expect(await ssoSessionFor("nowhere")).toBeUndefined();
    expect(await ssoSessionFor("loop")).toBeUndefined();
  });
});
