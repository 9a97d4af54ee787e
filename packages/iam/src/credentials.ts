import { fromNodeProviderChain } from "@aws-sdk/credential-providers";
import { getProfileName, parseKnownFiles } from "@smithy/core/config";
import type { AwsCredentialIdentity, AwsCredentialIdentityProvider } from "@smithy/types";
import { configFilePath, credentialsFilePath } from "./aws-paths.js";

export interface CredentialSettings {
  /** AWS profile (SSO, static, assume-role, credential_process...); undefined = the SDK default chain. */
  profile?: string | undefined;
  /** Region from the rdsd config. Not part of the provider's identity: see resolveRegion for signing. */
  region?: string | undefined;
}

/** Builds the provider for one profile; called once per profile by a registry. */
export type CredentialProviderFactory = (profile: string | undefined) => AwsCredentialIdentityProvider;

/** Thrown when the chain found nothing and the profile it was asked for exists in no shared file. */
export class AwsProfileNotFoundError extends Error {
  override name = "AwsProfileNotFoundError";
  readonly profile: string;
  readonly files: readonly string[];
  constructor(profile: string, files: readonly string[], options?: { cause?: unknown }) {
    super(`AWS profile ${profile} was not found in ${files.join(" or ")}`, options);
    this.profile = profile;
    this.files = files;
  }
}

/**
 * The chain found nothing, and one of its providers failed for a reason worth showing (a credential_process
 * that exited non-zero or returned expired keys, an unreadable token file...): the SDK itself only says
 * "Could not load credentials from any providers" and drops that reason.
 */
export class CredentialsUnavailableError extends Error {
  override name = "CredentialsUnavailableError";
  /** The failing provider's own message (the SDK's text; may name paths and commands, never keys). */
  readonly reason: string;
  constructor(message: string, reason: string, options?: { cause?: unknown }) {
    super(message, options);
    this.reason = reason;
  }
}

/**
 * One credential provider per profile, built once and shared by the daemon and every tunnel,
 * so an SSO session or assumed role is resolved once rather than per connection.
 */
export class CredentialProviderRegistry {
  readonly #providers = new Map<string | undefined, AwsCredentialIdentityProvider>();
  readonly #factory: CredentialProviderFactory;

  constructor(factory: CredentialProviderFactory = nodeChainProvider) {
    this.#factory = factory;
  }

  /** The shared provider for settings.profile, built on first use. */
  providerFor(settings: CredentialSettings = {}): AwsCredentialIdentityProvider {
    const key = settings.profile;
    let provider = this.#providers.get(key);
    if (provider === undefined) {
      provider = this.#factory(key);
      this.#providers.set(key, provider);
    }
    return provider;
  }

  /** Replace a profile's provider with fixed keys or a given provider (tests, the SSM emulator). */
  useStatic(profile: string | undefined, source: AwsCredentialIdentity | AwsCredentialIdentityProvider): void {
    this.#providers.set(profile, typeof source === "function" ? source : staticCredentialProvider(source));
  }

  /** Drop one profile's provider (undefined = the default chain's): the next providerFor builds a fresh one. */
  forget(profile: string | undefined): void {
    this.#providers.delete(profile);
  }

  /** Drop every provider. */
  clear(): void {
    this.#providers.clear();
  }

  /** Profiles with a provider built, undefined standing for the default chain. */
  profiles(): (string | undefined)[] {
    return [...this.#providers.keys()];
  }
}

/** The process-wide registry behind credentialProviderFor. */
export const defaultCredentialRegistry = new CredentialProviderRegistry();

/** The shared, memoized provider for a profile (see CredentialProviderRegistry). */
export function credentialProviderFor(settings: CredentialSettings = {}): AwsCredentialIdentityProvider {
  return defaultCredentialRegistry.providerFor(settings);
}

/** A provider that always answers with these keys. */
export function staticCredentialProvider(identity: AwsCredentialIdentity): AwsCredentialIdentityProvider {
  if (!identity.accessKeyId || !identity.secretAccessKey) {
    throw new TypeError("static credentials need both accessKeyId and secretAccessKey");
  }
  const frozen = Object.freeze({ ...identity });
  return async () => frozen;
}

/**
 * The SDK's node chain (env, SSO, ini, credential_process, web identity, ECS/IMDS) for a profile.
 *
 * Caching and sharing are the SDK's own (credential-provider-node's memoizeChain), not repeated
 * here: it keeps the identity, makes concurrent callers share one resolution, refreshes in the
 * background from 5 minutes before `expiration`, and blocks on a refresh only once the identity
 * has actually expired. (Node loads the package's CommonJS build, whose chain is built
 * synchronously on first call; the tests count resolutions to hold the SDK to this.)
 * Added here: when the chain reports only "Could not load credentials from any providers", a missing
 * profile becomes an AwsProfileNotFoundError naming the profile and the files read, and a provider that
 * failed for a real reason (seen through the SDK's debug log, the only place it keeps it) becomes a
 * CredentialsUnavailableError carrying that reason.
 */
export function nodeChainProvider(profile: string | undefined): AwsCredentialIdentityProvider {
  const reasons = new ProviderFailureLog();
  // ignoreCache: the SDK otherwise keeps its first read of ~/.aws/config for the process's life;
  // a daemon must see `aws configure` edits made after it started. Reads happen only on refresh.
  const chain = fromNodeProviderChain({ profile, ignoreCache: true, logger: reasons.logger });
  return async (properties) => {
    try {
      const identity = await chain(properties);
      reasons.clear();
      return identity;
    } catch (error) {
      const explained = await withMissingProfileExplained(error, profile);
      throw explained === error ? withProviderReason(error, reasons.latest(), profile) : explained;
    }
  };
}

// Messages of providers that simply do not apply to the profile (the chain moves on): not a reason.
const NOT_APPLICABLE = [
  /skipping fromEnv provider/,
  /^Skipping /,
  /^Unable to find environment variable credentials/,
  /^Could not resolve credentials using profile/,
  /could not be found in shared credentials file/,
  /did not contain credential_process/,
  /^Web identity configuration not specified/,
  /Instance Metadata Service access disabled/,
  /^Could not load credentials from any providers/,
];
const PROVIDER_ERROR_LOG = /^@smithy\/property-provider (?:->|\(!\)) ([\s\S]*)$/;

/** Keeps the last few provider failures the SDK logs at debug level (its ProviderError constructor logs each). */
class ProviderFailureLog {
  readonly #recent: string[] = [];
  readonly logger = {
    debug: (...args: unknown[]) => {
      const found = PROVIDER_ERROR_LOG.exec(args.map(String).join(" "));
      const message = found?.[1]?.trim();
      if (!message || NOT_APPLICABLE.some((re) => re.test(message))) return;
      this.#recent.push(message);
      if (this.#recent.length > 8) this.#recent.shift();
    },
    info: () => {},
    warn: () => {},
    error: () => {},
  };

  latest(): string | undefined {
    return this.#recent.at(-1);
  }

  clear(): void {
    this.#recent.length = 0;
  }
}

function withProviderReason(error: unknown, reason: string | undefined, profile: string | undefined): unknown {
  if (reason === undefined || !(error instanceof Error) || !/Could not load credentials from any providers/.test(error.message)) return error;
  const named = profile ?? process.env["AWS_PROFILE"] ?? "default";
  // exec's "Command failed: <command line>\n<stderr>": the helper's own words are the stderr.
  const failedCommand = /^Command failed: [^\n]*\n?([\s\S]*)$/.exec(reason);
  if (failedCommand) {
    const said = failedCommand[1]!.trim() || "no message";
    return new CredentialsUnavailableError(`Profile ${named} credential_process failed: ${said}`, reason, { cause: error });
  }
  return new CredentialsUnavailableError(`${error.message}: ${reason}`, reason, { cause: error });
}

async function withMissingProfileExplained(error: unknown, profile: string | undefined): Promise<unknown> {
  const named = profile ?? process.env["AWS_PROFILE"];
  if (!named || !(error instanceof Error) || !/Could not load credentials from any providers/.test(error.message)) {
    return error;
  }
  const profileName = getProfileName({ profile: named });
  try {
    const profiles = await parseKnownFiles({ profile: profileName, ignoreCache: true });
    if (profiles[profileName] !== undefined) return error;
  } catch {
    return error;
  }
  return new AwsProfileNotFoundError(profileName, [configFilePath(), credentialsFilePath()], { cause: error });
}
