import type { RdsdConfig, TargetConfig } from "@rdsd/config";
import { ssoSessionExpired, ssoSessionFor } from "@rdsd/iam";

/** One SSO session the config's targets depend on, with the profiles and targets that use it. */
export interface SsoSessionUse {
  /** The sso-session name (or a legacy profile's start URL): `aws sso login` refreshes it for every profile using it. */
  session: string;
  /** The profile to log in with (`aws sso login --profile P`): the first target's, in config order. */
  loginProfile: string;
  /** Every profile (as the targets name them; "default" for none) that depends on this session. */
  profiles: string[];
  targets: string[];
  /** When the cached SSO token expires; null when there is none. */
  expiresAt: Date | null;
  expired: boolean;
}

/** Targets that make AWS calls: IAM tokens or SSM tunnels. */
export function targetsUsingAws(config: RdsdConfig): TargetConfig[] {
  return config.targets.filter((t) => t.auth.kind === "iam" || t.tunnel.driver !== "direct");
}

/**
 * The distinct SSO sessions behind the targets' profiles (role profiles followed to their SSO source), in config
 * order. Profiles without SSO are left out; a profile that cannot be read is left to the credential checks.
 */
export async function ssoSessionsInUse(config: RdsdConfig, now: Date = new Date()): Promise<SsoSessionUse[]> {
  const sessions = new Map<string, SsoSessionUse>();
  for (const target of targetsUsingAws(config)) {
    const state = await ssoSessionFor(target.aws.profile).catch(() => undefined);
    if (state === undefined) continue;
    let use = sessions.get(state.session);
    if (use === undefined) {
      use = { session: state.session, loginProfile: state.loginProfile, profiles: [], targets: [], expiresAt: state.expiresAt, expired: ssoSessionExpired(state, now) };
      sessions.set(state.session, use);
    }
    if (!use.profiles.includes(state.profile)) use.profiles.push(state.profile);
    use.targets.push(target.name);
  }
  return [...sessions.values()];
}
