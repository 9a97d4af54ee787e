import { configFilePath, credentialsFilePath } from "./aws-paths.js";
import { regionFromRdsHostname } from "./region.js";
import type { IamToken } from "./token-cache.js";

/** A failure as users see it: what happened, and the exact thing to do about it. */
export interface ErrorDescription {
  message: string;
  fix: string;
}

export type CredentialErrorKind = "sso-session" | "mfa-required" | "unreachable" | "profile-not-found" | "expired-credentials" | "credential-process" | "no-credentials" | "other";

// Messages of the installed SDK (credential-provider-sso, token-providers, credential-provider-ini,
// credential-provider-process, credential-provider-node) and of SSO/STS service errors.
const SSO_SESSION = [
  /The SSO session associated with this profile (?:has expired|is invalid)/, // legacy sso_start_url profiles
  /The SSO session token associated with profile=\S+ was not found or is invalid/, // sso-session, no cache file
  /\bToken is expired\b/, // sso-session, refresh failed
  /Value not present for '[^']+' in SSO Token/, // sso-session, cache file lacks fields (cannot refresh)
  /\bUnauthorizedException\b/, // SSO GetRoleCredentials: access token revoked or unknown
  /run '?aws sso login'?/,
];
// credential-provider-ini, for a role profile with mfa_serial: a daemon has no one to type the code.
const MFA_REQUIRED = [/requires multi-factor authentication, but no MFA code callback was provided/];
const PROFILE_NOT_FOUND = [
  /^Profile '?([^'\s]+)'? was not found\b/,
  /^Profile '?([^'\s]+)'? could not be found in shared credentials file/,
];
const EXPIRED_CREDENTIALS = [
  /\bExpiredToken(?:Exception)?\b/,
  /security token included in the request is expired/i,
  /credential_process returned expired credentials/,
  /\bRequestExpired\b/,
];
const CREDENTIAL_PROCESS_FAILED = [/credential_process failed: /];
const NO_CREDENTIALS = [/Could not load credentials from any providers/, /Could not resolve credentials using profile/];
// A credential source that could not be reached: "getaddrinfo ENOTFOUND portal.sso.eu-west-2.amazonaws.com",
// "connect ECONNREFUSED 127.0.0.1:443" (the SSO provider keeps only the text of the network error).
const UNREACHABLE = /\b(?:ENOTFOUND|EAI_AGAIN|ECONNREFUSED|ETIMEDOUT|ECONNRESET|EHOSTUNREACH|ENETUNREACH)\b(?:\s+([^\s,;()]+))?/;
// Steps of the SDK's own provider chain, not reasons anyone can act on ("AWS_EC2_METADATA_V1_DISABLED not set in
// env, checking config file next." is IMDS's fallback logic): kept out of what users read.
const SDK_INTERNAL = [/AWS_EC2_METADATA_V1_DISABLED/, /checking config file next/i, /^Could not load credentials from any providers\.?$/];
/** Errors the SDK's credential providers (and rdsd's wrapper of them) throw. */
const CREDENTIAL_ERROR_NAMES = new Set(["CredentialsProviderError", "TokenProviderError", "CredentialsUnavailableError", "AwsProfileNotFoundError"]);

/** Whether the error came from loading credentials rather than from the AWS call that needed them. */
export function isCredentialError(error: unknown): boolean {
  return CREDENTIAL_ERROR_NAMES.has(nameAndMessage(error).name) || credentialErrorKind(error) !== "other";
}

/** Classify an error thrown by a credential provider. */
export function credentialErrorKind(error: unknown): CredentialErrorKind {
  const { name, message } = nameAndMessage(error);
  const text = `${name}: ${message}`;
  if (name === "AwsProfileNotFoundError" || PROFILE_NOT_FOUND.some((re) => re.test(message))) return "profile-not-found";
  if (MFA_REQUIRED.some((re) => re.test(message))) return "mfa-required";
  if (SSO_SESSION.some((re) => re.test(text))) return "sso-session";
  if (EXPIRED_CREDENTIALS.some((re) => re.test(text))) return "expired-credentials";
  if (CREDENTIAL_PROCESS_FAILED.some((re) => re.test(message))) return "credential-process";
  // A host that did not answer: an SSO or STS host, or any host a credential provider itself failed to reach
  // (an SSM call's own network error is not a credentials problem; nor is IMDS once the whole chain gave up).
  const unreachable = UNREACHABLE.exec(message);
  const fromProvider = CREDENTIAL_ERROR_NAMES.has(name) && !NO_CREDENTIALS.some((re) => re.test(message));
  if (unreachable && (awsServiceOf(unreachable[1]) !== undefined || fromProvider)) return "unreachable";
  if (NO_CREDENTIALS.some((re) => re.test(message))) return "no-credentials";
  return "other";
}

/**
 * The user-facing message and fix for a credential provider failure.
 * `profile` is the profile rdsd asked for; otherwise AWS_PROFILE, otherwise "default".
 * Text from the error is scrubbed of anything that looks like a key or token.
 */
export function describeCredentialError(error: unknown, profile?: string): ErrorDescription {
  const { message: raw } = nameAndMessage(error);
  const detail = redactSecrets(userFacingDetail(raw));
  const named = profile ?? profileNamedIn(error) ?? process.env["AWS_PROFILE"];
  const shown = named ?? "default";
  const profileFlag = named === undefined ? "" : ` --profile ${named}`;

  switch (credentialErrorKind(error)) {
    case "sso-session":
      return {
        message: `SSO session for profile ${shown} expired or is missing${inParentheses(detail)}`,
        fix: `run \`aws sso login${profileFlag}\``,
      };
    case "mfa-required":
      return {
        message: `profile ${shown} assumes a role that needs an MFA code (mfa_serial), which a daemon cannot type`,
        fix:
          `use an SSO profile (\`aws configure sso\`) for this target, or a credential_process profile that supplies ` +
          `the role's credentials, and set it as the target's aws.profile`,
      };
    case "unreachable": {
      const host = UNREACHABLE.exec(raw)?.[1];
      return {
        message: `cannot reach ${awsServiceOf(host) ?? "the AWS credential source"}${host ? ` (${host})` : ""}: check the network`,
        fix: `the credentials of profile ${shown} come from there: check this machine's network connection, VPN and proxy settings; rdsd tries again by itself`,
      };
    }
    case "profile-not-found":
      return {
        message: `AWS profile ${shown} not found in ${configFilePath()} or ${credentialsFilePath()}`,
        fix:
          `add a [profile ${shown}] section to ${configFilePath()} (\`aws configure sso${profileFlag}\` or ` +
          `\`aws configure${profileFlag}\`), or set aws.profile in the rdsd config to an existing profile`,
      };
    case "expired-credentials":
      return {
        message: `AWS credentials for profile ${shown} have expired${inParentheses(detail)}`,
        fix:
          `refresh them: for an SSO profile run \`aws sso login${profileFlag}\`; for a session token ` +
          `(AWS_SESSION_TOKEN or aws_session_token in ${credentialsFilePath()}) replace it with a new one ` +
          `from your credential source, then retry`,
      };
    case "credential-process":
      return {
        message: `the credential_process of profile ${shown} failed (${detail.replace(/^Profile \S+ credential_process failed: /, "")})`,
        fix: `run the credential_process of [profile ${shown}] in ${configFilePath()} by hand to see why, and sign in again with the tool it calls`,
      };
    case "no-credentials":
      return {
        message: `no AWS credentials found${named === undefined ? "" : ` for profile ${named}`}${inParentheses(detail)}`,
        fix: "configure credentials: set AWS_PROFILE or aws.profile in the rdsd config, or run `aws configure`",
      };
    case "other":
      return {
        message: `AWS credentials for profile ${shown} could not be loaded${detail ? `: ${detail}` : ""}`,
        fix: `check them with \`aws sts get-caller-identity${profileFlag}\``,
      };
  }
}

/**
 * Why a server said `PAM authentication failed` (SQLSTATE 28000) to a token: the signature is
 * only checked there, so wrong clock, expired credentials, wrong region, missing rds_iam or a
 * policy without rds-db:connect all look the same. State exactly what was signed.
 */
export function explainTokenRejection(token: IamToken): ErrorDescription {
  const signed =
    `host ${token.host}, port ${token.port}, user ${token.user}, region ${token.region} ` +
    `at ${token.signedAt.toISOString()}`;
  const hostRegion = regionFromRdsHostname(token.host);
  const regionNote =
    hostRegion !== undefined && hostRegion !== token.region
      ? `; the endpoint is in ${hostRegion} but the token was signed for ${token.region}: set the target's region`
      : "";
  return {
    message: `the database rejected the IAM token (PAM authentication failed); what was signed: ${signed}`,
    fix:
      `check that the user has rds_iam (GRANT rds_iam TO "${token.user}"), the IAM policy allows ` +
      `rds-db:connect for this user, and the machine clock is right${regionNote}`,
  };
}

/** Which AWS service a credential source's host is ("portal.sso.eu-west-2.amazonaws.com": AWS SSO). */
function awsServiceOf(host: string | undefined): string | undefined {
  if (host && /^(?:portal\.sso|oidc)\.[a-z0-9-]+\.amazonaws\.com/.test(host)) return "AWS SSO";
  if (host && /^sts\.(?:[a-z0-9-]+\.)?amazonaws\.com/.test(host)) return "AWS STS";
  return undefined;
}

/** " (detail)", or nothing when there is no detail worth showing. */
function inParentheses(detail: string): string {
  return detail ? ` (${detail})` : "";
}

/**
 * The part of an SDK message worth showing: without the "Error: " a wrapped error's text keeps, the
 * chain's generic "Could not load credentials from any providers" and the chain's internal steps.
 */
function userFacingDetail(raw: string): string {
  const text = raw.replace(/^Error: /, "");
  const reason = text.replace(/^Could not load credentials from any providers:?\s*/, "");
  if (reason === "" || SDK_INTERNAL.some((re) => re.test(reason))) return "";
  return reason === text ? text : reason;
}

/** Remove anything that looks like an access key id, secret, session token or signature. */
export function redactSecrets(text: string): string {
  return text
    .replace(/(X-Amz-(?:Signature|Security-Token|Credential)=)[^&\s]+/gi, "$1<redacted>")
    .replace(/\b(?:AKIA|ASIA|AIDA|AROA|AKID)[A-Z0-9]{12,}\b/g, "<access key id>")
    .replace(/[A-Za-z0-9+/=_-]{40,}/g, "<redacted>");
}

function nameAndMessage(error: unknown): { name: string; message: string } {
  if (error instanceof Error) return { name: error.name, message: error.message };
  if (typeof error === "object" && error !== null) {
    const { name, message } = error as { name?: unknown; message?: unknown };
    return { name: typeof name === "string" ? name : "", message: typeof message === "string" ? message : "" };
  }
  return { name: "", message: String(error) };
}

function profileNamedIn(error: unknown): string | undefined {
  if (typeof error === "object" && error !== null && typeof (error as { profile?: unknown }).profile === "string") {
    return (error as { profile: string }).profile;
  }
  const { message } = nameAndMessage(error);
  for (const re of [...PROFILE_NOT_FOUND, /associated with profile=(\S+?) was/, /using profile: \[([^\]]+)\]/]) {
    const found = re.exec(message)?.[1];
    if (found) return found;
  }
  return undefined;
}
