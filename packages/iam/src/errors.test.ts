import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { credentialErrorKind, describeCredentialError, explainTokenRejection, isCredentialError, redactSecrets } from "./errors.js";
import type { IamToken } from "./token-cache.js";

// Errors shaped as the installed SDK throws them (name + message); the real code paths that
// produce them are exercised in credentials.test.ts.
function sdkError(name: string, message: string): Error {
  const error = new Error(message);
  error.name = name;
  return error;
}

beforeEach(() => {
  vi.stubEnv("AWS_PROFILE", undefined);
  vi.stubEnv("AWS_CONFIG_FILE", "/home/dev/.aws/config");
  vi.stubEnv("AWS_SHARED_CREDENTIALS_FILE", "/home/dev/.aws/credentials");
});
afterEach(() => {
  vi.unstubAllEnvs();
});

describe("describeCredentialError", () => {
  it.each([
    "The SSO session associated with this profile has expired. To refresh this SSO session run aws sso login with the corresponding profile.",
    "The SSO session associated with this profile is invalid. To refresh this SSO session run aws sso login with the corresponding profile.",
    "Token is expired. To refresh this SSO session run 'aws sso login' with the corresponding profile.",
    "Value not present for 'refreshToken' in SSO Token. Cannot refresh. To refresh this SSO session run 'aws sso login' with the corresponding profile.",
    "UnauthorizedException: Session token not found or invalid",
  ])("SSO: %s", (message) => {
    const error = sdkError("CredentialsProviderError", message);
    expect(credentialErrorKind(error)).toBe("sso-session");
    expect(describeCredentialError(error, "dev-sso").fix).toBe("run `aws sso login --profile dev-sso`");
  });

  it("an unreachable SSO portal is named as such, not as the AWS call that needed the credentials", () => {
    // What credential-provider-sso throws when GetRoleCredentials cannot connect (it keeps only the text).
    const error = sdkError("CredentialsProviderError", "Error: getaddrinfo ENOTFOUND portal.sso.eu-west-2.amazonaws.com");
    expect(credentialErrorKind(error)).toBe("unreachable");
    expect(isCredentialError(error)).toBe(true);
    const described = describeCredentialError(error, "dev-sso");
    expect(described.message).toBe("cannot reach AWS SSO (portal.sso.eu-west-2.amazonaws.com): check the network");
    expect(described.fix).toContain("profile dev-sso");
    // An SSM call's own network failure is not a credentials problem.
    const ssmDown = Object.assign(new Error("getaddrinfo ENOTFOUND ssm.eu-west-2.amazonaws.com"), { code: "ENOTFOUND" });
    expect(isCredentialError(ssmDown)).toBe(false);
  });

  it("keeps the SDK's internal chain steps out of the message", () => {
    // IMDS's fallback logic, which the chain's debug log hands over as the last provider's "reason".
    const error = sdkError("CredentialsUnavailableError", "Could not load credentials from any providers: AWS_EC2_METADATA_V1_DISABLED not set in env, checking config file next.");
    expect(describeCredentialError(error, "dev")).toEqual({
      message: "no AWS credentials found for profile dev",
      fix: "configure credentials: set AWS_PROFILE or aws.profile in the rdsd config, or run `aws configure`",
    });
    // A real reason stays.
    const unreadable = sdkError("CredentialsUnavailableError", "Could not load credentials from any providers: EACCES: permission denied, open '/var/run/token'");
    expect(describeCredentialError(unreadable, "dev").message).toBe("no AWS credentials found for profile dev (EACCES: permission denied, open '/var/run/token')");
  });

  it("without a profile, falls back to AWS_PROFILE, then to plain aws sso login", () => {
    const error = sdkError("CredentialsProviderError", "Token is expired. To refresh this SSO session run 'aws sso login' with the corresponding profile.");
    expect(describeCredentialError(error).fix).toBe("run `aws sso login`");
    vi.stubEnv("AWS_PROFILE", "team");
    expect(describeCredentialError(error).fix).toBe("run `aws sso login --profile team`");
  });

  it.each([
    ["ExpiredToken", "The security token included in the request is expired"],
    ["ExpiredTokenException", "Token has expired"],
    ["CredentialsProviderError", "Profile ops credential_process returned expired credentials."],
  ])("expired credentials: %s", (name, message) => {
    const described = describeCredentialError(sdkError(name, message), "ops");
    expect(described.message).toMatch(/^AWS credentials for profile ops have expired/);
    expect(described.fix).toContain("refresh them");
    expect(described.fix).toContain("/home/dev/.aws/credentials");
  });

  it.each([
    "Profile missing was not found.",
    "Profile 'missing' could not be found in shared credentials file.",
    "Profile missing could not be found in shared credentials file.",
  ])("profile not found: %s", (message) => {
    const described = describeCredentialError(sdkError("CredentialsProviderError", message));
    expect(described.message).toBe("AWS profile missing not found in /home/dev/.aws/config or /home/dev/.aws/credentials");
    expect(described.fix).toContain("add a [profile missing] section to /home/dev/.aws/config");
  });

  it("no credentials", () => {
    const described = describeCredentialError(sdkError("CredentialsProviderError", "Could not load credentials from any providers"));
    expect(described.fix).toBe("configure credentials: set AWS_PROFILE or aws.profile in the rdsd config, or run `aws configure`");
  });

  it("anything else keeps the SDK's words, scrubbed, and points at sts get-caller-identity", () => {
    const described = describeCredentialError(
      new Error("Profile p web identity token file unreadable: key AKIDTESTEXAMPLE000009 secret wJalrXUtnFEMIK7MDENGbPxRfiCYEXAMPLEKEYxyz0"),
      "p",
    );
    expect(described.message).toBe("AWS credentials for profile p could not be loaded: Profile p web identity token file unreadable: key <access key id> secret <redacted>");
    expect(described.fix).toBe("check them with `aws sts get-caller-identity --profile p`");
    expect(describeCredentialError("weird", "p").message).toContain("weird");
  });
});

describe("a failing credential_process", () => {
  it("shows the helper's own words, scrubbed, and says to run it by hand", () => {
    const described = describeCredentialError(
      new Error("Profile p credential_process failed: helper printed AKIDTESTEXAMPLE000009 wJalrXUtnFEMIK7MDENGbPxRfiCYEXAMPLEKEYxyz0 and gave up"),
      "p",
    );
    expect(described).toEqual({
      message: "the credential_process of profile p failed (helper printed <access key id> <redacted> and gave up)",
      fix: "run the credential_process of [profile p] in /home/dev/.aws/config by hand to see why, and sign in again with the tool it calls",
    });
  });
});

describe("redactSecrets", () => {
  it("removes key ids, long secrets and signed URL parameters", () => {
    // Key-id shapes are assembled at run time so no literal in this file looks like a real key.
    const sessionKeyId = ["AS", "IA", "X".repeat(16)].join("");
    const longTermKeyId = ["AK", "IA", "IOSFODNN7EXAMPLE"].join("");
    const text =
      `h:5432/?Action=connect&X-Amz-Credential=${sessionKeyId}%2F20240305&X-Amz-Security-Token=IQoJb3&X-Amz-Signature=abc123`;
    expect(redactSecrets(text)).toBe(
      "h:5432/?Action=connect&X-Amz-Credential=<redacted>&X-Amz-Security-Token=<redacted>&X-Amz-Signature=<redacted>",
    );
    expect(redactSecrets(`${longTermKeyId} is the key`)).toBe("<access key id> is the key");
    expect(redactSecrets("short words stay")).toBe("short words stay");
  });
});

describe("explainTokenRejection", () => {
  const token: IamToken = {
    host: "orders-dev.abc123xyz.eu-west-2.rds.amazonaws.com",
    port: 5432,
    user: "iam_dev",
    region: "eu-west-2",
    token: "orders-dev.abc123xyz.eu-west-2.rds.amazonaws.com:5432/?Action=connect&X-Amz-Signature=deadbeef",
    signedAt: new Date("2024-03-05T10:20:30Z"),
    expiresAt: new Date("2024-03-05T10:35:30Z"),
  };

  it("states exactly what was signed and what to check, without the token", () => {
    const { message, fix } = explainTokenRejection(token);
    expect(message).toBe(
      "the database rejected the IAM token (PAM authentication failed); what was signed: " +
        "host orders-dev.abc123xyz.eu-west-2.rds.amazonaws.com, port 5432, user iam_dev, region eu-west-2 at 2024-03-05T10:20:30.000Z",
    );
    expect(fix).toBe(
      'check that the user has rds_iam (GRANT rds_iam TO "iam_dev"), the IAM policy allows rds-db:connect for this user, and the machine clock is right',
    );
    expect(message + fix).not.toContain("deadbeef");
  });

  it("points out a region that does not match the endpoint", () => {
    expect(explainTokenRejection({ ...token, region: "us-east-1" }).fix).toContain(
      "the endpoint is in eu-west-2 but the token was signed for us-east-1",
    );
  });
});
