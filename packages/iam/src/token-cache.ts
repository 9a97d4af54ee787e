import { Signer } from "@aws-sdk/rds-signer";
import type { AwsCredentialIdentityProvider } from "@smithy/types";
import { isValidRegionName } from "./region.js";

/** What a token is signed for. The host and port are the real RDS endpoint's, never the tunnel's. */
export interface IamTokenKey {
  /** The AWS profile whose credentials sign it; undefined = the SDK's default chain. Two profiles never share a token. */
  profile?: string | undefined;
  host: string;
  port: number;
  /** Database user; case-sensitive. */
  user: string;
  region: string;
}

export interface IamToken extends IamTokenKey {
  /** The password to send. Never log it. */
  token: string;
  /** The token's X-Amz-Date (whole seconds). */
  signedAt: Date;
  /** signedAt + X-Amz-Expires (900 s). */
  expiresAt: Date;
}

/** Status of one cached token for `rdsd status`: never the token itself. */
export interface IamTokenStatus extends IamTokenKey {
  signedAt: Date | null;
  expiresAt: Date | null;
  /** When the cache stops handing the token out and signs a new one. */
  renewAt: Date | null;
  ageMs: number | null;
  /** Completed signings for this key since the cache was created. */
  signings: number;
  signingNow: boolean;
}

/** One identity for every token, or the credentials of each key's profile (asked once per slot). */
export type IamTokenCredentials =
  | { credentials: AwsCredentialIdentityProvider }
  | { credentialsFor: (profile: string | undefined) => AwsCredentialIdentityProvider };

export type IamTokenCacheOptions = IamTokenCredentials & IamTokenCacheSettings;

export interface IamTokenCacheSettings {
  /** Stop reusing a token this long before it expires. Default 5 minutes. */
  marginMs?: number;
  /** Clock for reuse and age decisions. Signing itself uses the global Date (see README). */
  now?: () => Date;
  /** Allow signing for localhost/loopback addresses (only a local demo server would accept that). */
  allowLoopbackHost?: boolean;
}

export const TOKEN_LIFETIME_MS = 15 * 60_000;
export const DEFAULT_TOKEN_MARGIN_MS = 5 * 60_000;

interface Entry {
  readonly key: IamTokenKey;
  readonly signer: Signer;
  token: IamToken | undefined;
  inFlight: Promise<IamToken> | undefined;
  signings: number;
}

/**
 * RDS IAM tokens, one cache slot per (profile, host, port, user, region). A token is reused until
 * `signedAt + 15 min - margin`; concurrent requests for one slot share one signing.
 * Failed signings are not cached: the next request tries again.
 */
export class IamTokenCache {
  readonly #credentialsFor: (profile: string | undefined) => AwsCredentialIdentityProvider;
  readonly #marginMs: number;
  readonly #now: () => Date;
  readonly #allowLoopbackHost: boolean;
  readonly #entries = new Map<string, Entry>();

  constructor(options: IamTokenCacheOptions) {
    const marginMs = options.marginMs ?? DEFAULT_TOKEN_MARGIN_MS;
    if (!Number.isFinite(marginMs) || marginMs < 0 || marginMs >= TOKEN_LIFETIME_MS) {
      throw new RangeError(`token margin must be at least 0 and under 15 minutes, got ${marginMs} ms`);
    }
    if ("credentialsFor" in options) this.#credentialsFor = options.credentialsFor;
    else {
      const credentials = options.credentials;
      this.#credentialsFor = () => credentials;
    }
    this.#marginMs = marginMs;
    this.#now = options.now ?? (() => new Date());
    this.#allowLoopbackHost = options.allowLoopbackHost ?? false;
  }

  async getToken(request: IamTokenKey): Promise<IamToken> {
    const key = this.#validate(request);
    const entry = this.#entryFor(key);
    if (entry.token !== undefined && this.#now().getTime() < this.#renewAt(entry.token)) {
      return entry.token;
    }
    if (entry.inFlight === undefined) {
      const signing = this.#sign(entry).finally(() => {
        if (entry.inFlight === signing) entry.inFlight = undefined;
      });
      entry.inFlight = signing;
    }
    return entry.inFlight;
  }

  /** Forget a slot's token (for example after the server rejected it) so the next request re-signs. */
  invalidate(request: IamTokenKey): void {
    const entry = this.#entries.get(slotId(normalizeKey(request)));
    if (entry !== undefined) entry.token = undefined;
  }

  /** Age of the slot's current token in ms, or undefined when none is cached. */
  tokenAgeMs(request: IamTokenKey): number | undefined {
    const token = this.#entries.get(slotId(normalizeKey(request)))?.token;
    return token === undefined ? undefined : this.#now().getTime() - token.signedAt.getTime();
  }

  /** Every slot's state; never includes a token. */
  describe(): IamTokenStatus[] {
    const now = this.#now().getTime();
    return [...this.#entries.values()].map(({ key, token, signings, inFlight }) => ({
      ...key,
      signedAt: token?.signedAt ?? null,
      expiresAt: token?.expiresAt ?? null,
      renewAt: token === undefined ? null : new Date(this.#renewAt(token)),
      ageMs: token === undefined ? null : now - token.signedAt.getTime(),
      signings,
      signingNow: inFlight !== undefined,
    }));
  }

  #renewAt(token: IamToken): number {
    return token.expiresAt.getTime() - this.#marginMs;
  }

  #entryFor(key: IamTokenKey): Entry {
    const id = slotId(key);
    let entry = this.#entries.get(id);
    if (entry === undefined) {
      const signer = new Signer({
        hostname: key.host,
        port: key.port,
        username: key.user,
        region: key.region,
        credentials: this.#credentialsFor(key.profile),
      });
      entry = { key, signer, token: undefined, inFlight: undefined, signings: 0 };
      this.#entries.set(id, entry);
    }
    return entry;
  }

  async #sign(entry: Entry): Promise<IamToken> {
    const token = await entry.signer.getAuthToken();
    const issued = { ...entry.key, token, ...signingTimes(token) };
    entry.token = issued;
    entry.signings += 1;
    return issued;
  }

  #validate(request: IamTokenKey): IamTokenKey {
    const key = normalizeKey(request);
    if (!this.#allowLoopbackHost && isLoopbackHost(key.host)) {
      throw new TypeError(
        `IAM token: refusing to sign for ${key.host}; sign for the RDS endpoint name, not the tunnel's local address`,
      );
    }
    if (!/^[a-z0-9.-]+$/.test(key.host) || key.host.startsWith(".") || key.host.includes("..")) {
      throw new TypeError(`IAM token: "${request.host}" is not a hostname`);
    }
    if (!Number.isInteger(key.port) || key.port < 1 || key.port > 65535) {
      throw new TypeError(`IAM token: port ${String(request.port)} is not a TCP port`);
    }
    if (key.user === "" || key.user.includes("\0")) {
      throw new TypeError("IAM token: database user is empty or invalid");
    }
    if (!isValidRegionName(key.region)) {
      throw new TypeError(`IAM token: "${request.region}" is not an AWS region name`);
    }
    return key;
  }
}

/** DNS names are case-insensitive: one slot per endpoint however it was spelled. The user is kept as is. */
function normalizeKey({ profile, host, port, user, region }: IamTokenKey): IamTokenKey {
  const key: IamTokenKey = { host: host.trim().toLowerCase().replace(/\.$/, ""), port, user, region: region.trim() };
  if (profile !== undefined) key.profile = profile;
  return key;
}

function slotId(key: IamTokenKey): string {
  return JSON.stringify([key.profile ?? null, key.host, key.port, key.user, key.region]);
}

function isLoopbackHost(host: string): boolean {
  return host === "localhost" || host.endsWith(".localhost") || /^127\.\d+\.\d+\.\d+$/.test(host) || host === "::1";
}

/** signedAt and expiresAt as the token itself states them (X-Amz-Date, X-Amz-Expires). */
export function signingTimes(token: string): { signedAt: Date; expiresAt: Date } {
  const query = new URLSearchParams(token.slice(token.indexOf("?") + 1));
  const date = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(query.get("X-Amz-Date") ?? "");
  const expires = Number(query.get("X-Amz-Expires"));
  if (date === null || !Number.isInteger(expires) || expires <= 0) {
    throw new Error("IAM token: signer returned a token without X-Amz-Date/X-Amz-Expires");
  }
  const [, y, mo, d, h, mi, s] = date.map(Number) as [number, number, number, number, number, number, number];
  const signedAt = new Date(Date.UTC(y, mo - 1, d, h, mi, s));
  return { signedAt, expiresAt: new Date(signedAt.getTime() + expires * 1000) };
}
