// Credential resolution through the real SDK code paths: a temporary HOME with ~/.aws/config,
// SSO token cache files, credential_process scripts, and local HTTP servers standing in for the
// SSO, SSO-OIDC and STS endpoints (AWS_ENDPOINT_URL_*). No network.
import { createHash } from "node:crypto";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import type { IncomingMessage, Server, ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { getSSOTokenFilepath } from "@smithy/core/config";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { AwsProfileNotFoundError, CredentialProviderRegistry, CredentialsUnavailableError, credentialProviderFor, staticCredentialProvider } from "./credentials.js";
import { credentialErrorKind, describeCredentialError } from "./errors.js";
import { IamTokenCache } from "./token-cache.js";

const AWS_ENV = [
  "AWS_PROFILE",
  "AWS_ACCESS_KEY_ID",
  "AWS_SECRET_ACCESS_KEY",
  "AWS_SESSION_TOKEN",
  "AWS_REGION",
  "AWS_DEFAULT_REGION",
  "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
  "AWS_CONTAINER_CREDENTIALS_FULL_URI",
  "AWS_WEB_IDENTITY_TOKEN_FILE",
  "AWS_ROLE_ARN",
  "AWS_ENDPOINT_URL",
  "AWS_ENDPOINT_URL_SSO",
  "AWS_ENDPOINT_URL_SSO_OIDC",
  "AWS_ENDPOINT_URL_STS",
];

interface AwsHome {
  home: string;
  configFile: string;
  writeConfig(text: string): void;
  writeCredentials(text: string): void;
  writeSsoCache(id: string, token: Record<string, unknown>): string;
}

let home: AwsHome;
const servers: Server[] = [];

function makeAwsHome(): AwsHome {
  const dir = mkdtempSync(join(tmpdir(), "rdsd-iam-"));
  const configFile = join(dir, ".aws", "config");
  const credentialsFile = join(dir, ".aws", "credentials");
  mkdirSync(join(dir, ".aws", "sso", "cache"), { recursive: true });
  vi.stubEnv("HOME", dir);
  vi.stubEnv("AWS_CONFIG_FILE", configFile);
  vi.stubEnv("AWS_SHARED_CREDENTIALS_FILE", credentialsFile);
  vi.stubEnv("AWS_EC2_METADATA_DISABLED", "true"); // the chain's last resort is IMDS: keep it off the network
  for (const name of AWS_ENV) vi.stubEnv(name, undefined);
  writeFileSync(credentialsFile, "");
  return {
    home: dir,
    configFile,
    writeConfig: (text) => writeFileSync(configFile, text),
    writeCredentials: (text) => writeFileSync(credentialsFile, text),
    writeSsoCache(id, token) {
      // The SDK's cache name: sha1 of the sso-session name (or of the start URL for legacy profiles).
      const path = join(dir, ".aws", "sso", "cache", `${createHash("sha1").update(id).digest("hex")}.json`);
      expect(getSSOTokenFilepath(id)).toBe(path);
      writeFileSync(path, JSON.stringify(token));
      return path;
    },
  };
}

type Handler = (req: IncomingMessage, body: string, res: ServerResponse) => void;

async function localEndpoint(handler: Handler): Promise<{ url: string; requests: { method: string; url: string; headers: IncomingMessage["headers"] }[] }> {
  const requests: { method: string; url: string; headers: IncomingMessage["headers"] }[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      requests.push({ method: req.method ?? "", url: req.url ?? "", headers: req.headers });
      handler(req, Buffer.concat(chunks).toString("utf8"), res);
    });
  });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}`, requests };
}

const SSO_PROFILE = (profile: string, session: string) => `[profile ${profile}]
sso_session = ${session}
sso_account_id = 111122223333
sso_role_name = DevAccess
region = eu-west-2

[sso-session ${session}]
sso_start_url = https://example-corp.awsapps.com/start
sso_region = eu-west-1
sso_registration_scopes = sso:account:access
`;

const HOUR = 3600_000;

beforeEach(() => {
  home = makeAwsHome();
});
afterEach(async () => {
  vi.unstubAllEnvs();
  await Promise.all(servers.splice(0).map((s) => new Promise((resolve) => s.close(resolve))));
  rmSync(home.home, { recursive: true, force: true });
});

describe("expired or missing SSO sessions through the real SDK", () => {
  it("sso-session profile whose token expired and whose refresh is refused: fix is aws sso login --profile", async () => {
    home.writeConfig(SSO_PROFILE("dev-sso", "corp-refused"));
    // What `aws sso login` leaves behind, hours later: expired access token, refresh material present.
    home.writeSsoCache("corp-refused", {
      startUrl: "https://example-corp.awsapps.com/start",
      region: "eu-west-1",
      accessToken: "expired-access-token",
      expiresAt: new Date(Date.now() - HOUR).toISOString(),
      clientId: "client-id",
      clientSecret: "client-secret",
      registrationExpiresAt: new Date(Date.now() + 30 * 24 * HOUR).toISOString(),
      refreshToken: "refresh-token",
    });
    // SSO-OIDC refuses the refresh token, as it does once the SSO session itself has ended.
    const oidc = await localEndpoint((_req, _body, res) => {
      res.writeHead(400, { "content-type": "application/json", "x-amzn-errortype": "InvalidGrantException" });
      res.end(JSON.stringify({ error: "invalid_grant", error_description: "Invalid refresh token provided" }));
    });
    vi.stubEnv("AWS_ENDPOINT_URL_SSO_OIDC", oidc.url);

    const error = await credentialProviderFor({ profile: "dev-sso" })().then(
      () => expect.unreachable("expired SSO session resolved"),
      (e: unknown) => e,
    );
    expect(oidc.requests.map((r) => `${r.method} ${r.url}`)).toEqual(["POST /token"]);
    expect((error as Error).name).toBe("CredentialsProviderError");
    expect((error as Error).message).toMatch(/^Token is expired\./);
    expect(credentialErrorKind(error)).toBe("sso-session");
    const described = describeCredentialError(error, "dev-sso");
    expect(described.fix).toBe("run `aws sso login --profile dev-sso`");
    expect(described.message).toContain("SSO session for profile dev-sso expired");
    for (const secret of ["expired-access-token", "client-secret", "refresh-token"]) {
      expect(JSON.stringify(described)).not.toContain(secret);
    }
  });

  it("sso-session token cache without refresh material, and no cache file at all", async () => {
    home.writeConfig(SSO_PROFILE("dev-sso", "corp-norefresh") + SSO_PROFILE("never-logged-in", "corp-none"));
    home.writeSsoCache("corp-norefresh", {
      startUrl: "https://example-corp.awsapps.com/start",
      region: "eu-west-1",
      accessToken: "expired-access-token",
      expiresAt: new Date(Date.now() - 60_000).toISOString(),
    });
    const registry = new CredentialProviderRegistry();

    const expired = await registry.providerFor({ profile: "dev-sso" })().catch((e: unknown) => e);
    expect((expired as Error).message).toMatch(/^Value not present for 'clientId' in SSO Token\. Cannot refresh\./);
    expect(describeCredentialError(expired, "dev-sso").fix).toBe("run `aws sso login --profile dev-sso`");

    const missing = await registry.providerFor({ profile: "never-logged-in" })().catch((e: unknown) => e);
    expect((missing as Error).message).toMatch(/SSO session token associated with profile=never-logged-in was not found/);
    // The profile is named in the SDK's message, so it is recovered even when the caller gives none.
    expect(describeCredentialError(missing).fix).toBe("run `aws sso login --profile never-logged-in`");
  });

  it("legacy sso_start_url profile with an expired token", async () => {
    home.writeConfig(`[profile legacy-sso]
sso_start_url = https://legacy-corp.awsapps.com/start
sso_region = eu-west-1
sso_account_id = 111122223333
sso_role_name = DevAccess
`);
    home.writeSsoCache("https://legacy-corp.awsapps.com/start", {
      startUrl: "https://legacy-corp.awsapps.com/start",
      region: "eu-west-1",
      accessToken: "expired-access-token",
      expiresAt: new Date(Date.now() - 60_000).toISOString(),
    });
    vi.stubEnv("AWS_PROFILE", "legacy-sso");
    const error = await new CredentialProviderRegistry().providerFor({})().catch((e: unknown) => e);
    expect((error as Error).message).toMatch(/^The SSO session associated with this profile has expired\./);
    // No profile passed: AWS_PROFILE is what the SDK used, so it is what the fix names.
    expect(describeCredentialError(error).fix).toBe("run `aws sso login --profile legacy-sso`");
  });

  it("after `aws sso login` the same shared provider recovers, resolving once for 50 concurrent callers", async () => {
    home.writeConfig(SSO_PROFILE("dev-sso", "corp-login"));
    home.writeSsoCache("corp-login", {
      startUrl: "https://example-corp.awsapps.com/start",
      region: "eu-west-1",
      accessToken: "old-access-token",
      expiresAt: new Date(Date.now() - 60_000).toISOString(),
    });
    const roleExpiry = Date.now() + 8 * HOUR;
    const sso = await localEndpoint((_req, _body, res) => {
      res.writeHead(200, { "content-type": "application/json" });
      res.end(
        JSON.stringify({
          roleCredentials: {
            accessKeyId: "AKIDTESTEXAMPLE000003",
            secretAccessKey: "roleSecretNotRealXXXXXXXXXXXXXXXXXXXXXXX",
            sessionToken: "role-session-token",
            expiration: roleExpiry,
          },
        }),
      );
    });
    vi.stubEnv("AWS_ENDPOINT_URL_SSO", sso.url);
    const registry = new CredentialProviderRegistry();
    const provider = registry.providerFor({ profile: "dev-sso" });
    expect(registry.providerFor({ profile: "dev-sso" })).toBe(provider);

    await expect(provider()).rejects.toThrow(/Cannot refresh/);
    expect(sso.requests).toHaveLength(0);

    home.writeSsoCache("corp-login", {
      startUrl: "https://example-corp.awsapps.com/start",
      region: "eu-west-1",
      accessToken: "fresh-access-token",
      expiresAt: new Date(Date.now() + 8 * HOUR).toISOString(),
    });
    const identities = await Promise.all(Array.from({ length: 50 }, () => provider()));
    expect(sso.requests).toHaveLength(1);
    expect(sso.requests[0]?.url).toBe("/federation/credentials?account_id=111122223333&role_name=DevAccess");
    expect(sso.requests[0]?.headers["x-amz-sso_bearer_token"]).toBe("fresh-access-token");
    expect(new Set(identities.map((i) => i.accessKeyId))).toEqual(new Set(["AKIDTESTEXAMPLE000003"]));
    expect(identities[0]?.expiration?.getTime()).toBe(roleExpiry);

    // Tokens are signed with the role's temporary credentials, without asking SSO again.
    const cache = new IamTokenCache({ credentials: provider });
    const token = await cache.getToken({ host: "orders-dev.abc123xyz.eu-west-2.rds.amazonaws.com", port: 5432, user: "iam_dev", region: "eu-west-2" });
    expect(token.token).toContain("X-Amz-Credential=AKIDTESTEXAMPLE000003%2F");
    expect(token.token).toContain("X-Amz-Security-Token=role-session-token");
    expect(sso.requests).toHaveLength(1);
  });
});

describe("other credential failures through the real SDK", () => {
  it("a profile that exists nowhere is named with the config file", async () => {
    home.writeConfig("[profile other]\nregion = eu-west-2\n");
    const error = await new CredentialProviderRegistry().providerFor({ profile: "typo-profile" })().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(AwsProfileNotFoundError);
    expect((error as Error).message).toBe(`AWS profile typo-profile was not found in ${home.configFile} or ${join(home.home, ".aws", "credentials")}`);
    const described = describeCredentialError(error);
    expect(described.message).toContain("AWS profile typo-profile not found in " + home.configFile);
    expect(described.fix).toContain(`add a [profile typo-profile] section to ${home.configFile}`);
  });

  it("no credentials anywhere", async () => {
    home.writeConfig("");
    const error = await new CredentialProviderRegistry().providerFor({})().catch((e: unknown) => e);
    expect((error as Error).message).toBe("Could not load credentials from any providers");
    expect(describeCredentialError(error)).toEqual({
      message: "no AWS credentials found",
      fix: "configure credentials: set AWS_PROFILE or aws.profile in the rdsd config, or run `aws configure`",
    });
  });

  it("a credential_process that fails or returns expired keys: the reason is shown, not the SDK's 'any providers'; fixed, the same provider recovers", async () => {
    const mode = join(home.home, "mode");
    const script = join(home.home, "helper.cjs");
    writeFileSync(
      script,
      `const mode = require("node:fs").readFileSync(${JSON.stringify(mode)}, "utf8");
if (mode === "fail") { console.error("sso helper: session expired at 17:02, sign in again"); process.exit(2); }
const expiration = new Date(Date.now() + (mode === "expired" ? -60000 : 3600000)).toISOString();
console.log(JSON.stringify({ Version: 1, AccessKeyId: "AKIDTESTEXAMPLE000006", SecretAccessKey: "helperSecretNotRealXXXXXXXXXXXXXXXXXXXXXX", SessionToken: "helper-session-token", Expiration: expiration }));`,
    );
    home.writeConfig(`[profile helper]\ncredential_process = ${process.execPath} ${script}\n`);
    const provider = new CredentialProviderRegistry().providerFor({ profile: "helper" });

    writeFileSync(mode, "fail");
    const failed = await provider().catch((e: unknown) => e);
    expect(failed).toBeInstanceOf(CredentialsUnavailableError);
    expect((failed as Error).message).toBe("Profile helper credential_process failed: sso helper: session expired at 17:02, sign in again");
    expect(credentialErrorKind(failed)).toBe("credential-process");
    expect(describeCredentialError(failed, "helper")).toEqual({
      message: "the credential_process of profile helper failed (sso helper: session expired at 17:02, sign in again)",
      fix: `run the credential_process of [profile helper] in ${home.configFile} by hand to see why, and sign in again with the tool it calls`,
    });

    writeFileSync(mode, "expired");
    const expired = await provider().catch((e: unknown) => e);
    expect((expired as Error).message).toBe("Could not load credentials from any providers: Profile helper credential_process returned expired credentials.");
    expect(credentialErrorKind(expired)).toBe("expired-credentials");
    expect(describeCredentialError(expired, "helper").message).toMatch(/^AWS credentials for profile helper have expired/);

    writeFileSync(mode, "ok");
    expect((await provider()).accessKeyId).toBe("AKIDTESTEXAMPLE000006");
    for (const error of [failed, expired]) expect(JSON.stringify(describeCredentialError(error, "helper"))).not.toMatch(/helperSecretNotReal|helper-session-token/);
  });

  it("assume-role whose source session token has expired (STS answers ExpiredToken)", async () => {
    const sts = await localEndpoint((_req, _body, res) => {
      res.writeHead(403, { "content-type": "text/xml" });
      res.end(
        `<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type>` +
          `<Code>ExpiredToken</Code><Message>The security token included in the request is expired</Message>` +
          `</Error><RequestId>00000000-0000-0000-0000-000000000000</RequestId></ErrorResponse>`,
      );
    });
    vi.stubEnv("AWS_ENDPOINT_URL_STS", sts.url);
    home.writeConfig(`[profile ops]
role_arn = arn:aws:iam::111122223333:role/DbOps
source_profile = base
region = eu-west-2
`);
    home.writeCredentials(`[base]
aws_access_key_id = AKIDTESTEXAMPLE000004
aws_secret_access_key = baseSecretNotRealXXXXXXXXXXXXXXXXXXXXXXX
aws_session_token = stale-session-token
`);
    const error = await new CredentialProviderRegistry().providerFor({ profile: "ops" })().catch((e: unknown) => e);
    expect(sts.requests.length).toBeGreaterThanOrEqual(1);
    expect(credentialErrorKind(error)).toBe("expired-credentials");
    const described = describeCredentialError(error, "ops");
    expect(described.message).toMatch(/^AWS credentials for profile ops have expired/);
    expect(described.fix).toMatch(/^refresh them:/);
    expect(JSON.stringify(described)).not.toMatch(/stale-session-token|baseSecretNotReal|AKIDTESTEXAMPLE000004/);
  });
});

describe("sharing providers", () => {
  it("one resolution for 50 concurrent first calls on a credential_process profile", async () => {
    const counter = join(home.home, "runs");
    const script = join(home.home, "credential-process.cjs");
    writeFileSync(counter, "");
    writeFileSync(
      script,
      `require("node:fs").appendFileSync(${JSON.stringify(counter)}, "x");
process.stdout.write(JSON.stringify({ Version: 1, AccessKeyId: "AKIDTESTEXAMPLE000005", SecretAccessKey: "procSecret",
  SessionToken: "proc-token", Expiration: new Date(Date.now() + 3600000).toISOString() }));`,
    );
    home.writeConfig(`[profile proc]\ncredential_process = ${process.execPath} ${script}\n`);

    const registry = new CredentialProviderRegistry();
    const results = await Promise.all(Array.from({ length: 50 }, () => registry.providerFor({ profile: "proc" })()));
    expect(results.every((r) => r.accessKeyId === "AKIDTESTEXAMPLE000005")).toBe(true);
    expect(readFileSync(counter, "utf8")).toBe("x");
    // Reused while far from expiry.
    await registry.providerFor({ profile: "proc" })();
    expect(readFileSync(counter, "utf8")).toBe("x");
    expect(registry.profiles()).toEqual(["proc"]);
  });

  it("static keys can be injected per profile and replace the chain", async () => {
    const registry = new CredentialProviderRegistry();
    const chain = registry.providerFor({ profile: "demo" });
    registry.useStatic("demo", { accessKeyId: "AKIDTESTEXAMPLE000006", secretAccessKey: "demoSecret" });
    const injected = registry.providerFor({ profile: "demo" });
    expect(injected).not.toBe(chain);
    expect((await injected()).accessKeyId).toBe("AKIDTESTEXAMPLE000006");
    registry.forget("demo");
    expect(registry.providerFor({ profile: "demo" })).not.toBe(injected);
    expect(() => staticCredentialProvider({ accessKeyId: "", secretAccessKey: "x" })).toThrow(TypeError);
  });

  it("builds each profile's provider once through the factory", () => {
    const built: (string | undefined)[] = [];
    const registry = new CredentialProviderRegistry((profile) => {
      built.push(profile);
      return staticCredentialProvider({ accessKeyId: "AKIDTESTEXAMPLE000007", secretAccessKey: "s" });
    });
    const a = registry.providerFor({ profile: "a", region: "eu-west-2" });
    expect(registry.providerFor({ profile: "a", region: "us-east-1" })).toBe(a);
    registry.providerFor({});
    registry.providerFor({ profile: undefined });
    expect(built).toEqual(["a", undefined]);
  });
});
