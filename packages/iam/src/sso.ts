import { getProfileName, getSSOTokenFromFile, parseKnownFiles } from "@smithy/core/config";

/** The SSO session behind a profile, and how long what `aws sso login` left in the cache lasts. */
export interface SsoSessionState {
  /** The profile asked about. */
  profile: string;
  /** The profile that holds the SSO settings: the profile itself, or the end of its source_profile chain. */
  loginProfile: string;
  /** The sso-session name, or the start URL of a legacy profile: the SSO cache is per this, not per profile. */
  session: string;
  /** When the cached SSO access token expires; null when there is none (never logged in, or unreadable). */
  expiresAt: Date | null;
}

/**
 * The SSO session a profile depends on (following role_arn + source_profile), read through the SDK's own
 * loaders (shared files and the ~/.aws/sso/cache token file, both re-read on each call); undefined for a
 * profile that uses no SSO (static keys, credential_process, a role over those) or that does not exist.
 */
export async function ssoSessionFor(profile: string | undefined): Promise<SsoSessionState | undefined> {
  const asked = getProfileName({ profile });
  const profiles = await parseKnownFiles({ profile: asked, ignoreCache: true });
  const seen = new Set<string>();
  let name = asked;
  for (;;) {
    const section = profiles[name];
    if (section === undefined || seen.has(name)) return undefined;
    seen.add(name);
    const session = section["sso_session"] ?? section["sso_start_url"];
    if (session) return { profile: asked, loginProfile: name, session, expiresAt: await cachedTokenExpiry(session) };
    const source = section["source_profile"];
    if (!section["role_arn"] || !source) return undefined;
    name = source;
  }
}

/** Whether the SSO session has ended by `now` (or was never started): `aws sso login` is needed. */
export function ssoSessionExpired(state: SsoSessionState, now: Date = new Date()): boolean {
  return state.expiresAt === null || state.expiresAt.getTime() <= now.getTime();
}

async function cachedTokenExpiry(session: string): Promise<Date | null> {
  try {
    const token = await getSSOTokenFromFile(session);
    const expiresAt = new Date(token.expiresAt);
    return Number.isNaN(expiresAt.getTime()) ? null : expiresAt;
  } catch {
    return null;
  }
}
