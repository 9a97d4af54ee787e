export {
  AwsProfileNotFoundError,
  CredentialProviderRegistry,
  CredentialsUnavailableError,
  credentialProviderFor,
  defaultCredentialRegistry,
  nodeChainProvider,
  staticCredentialProvider,
} from "./credentials.js";
export type { CredentialProviderFactory, CredentialSettings } from "./credentials.js";
export {
  isValidRegionName,
  regionConflict,
  regionFromProfile,
  regionFromRdsHostname,
  RegionNotFoundError,
  resolveRegion,
} from "./region.js";
export type { RegionLookup, RegionSource, ResolvedRegion } from "./region.js";
export { DEFAULT_TOKEN_MARGIN_MS, IamTokenCache, signingTimes, TOKEN_LIFETIME_MS } from "./token-cache.js";
export type { IamToken, IamTokenCacheOptions, IamTokenCredentials, IamTokenKey, IamTokenStatus } from "./token-cache.js";
export { credentialErrorKind, describeCredentialError, explainTokenRejection, isCredentialError, redactSecrets } from "./errors.js";
export type { CredentialErrorKind, ErrorDescription } from "./errors.js";
export { configFilePath, credentialsFilePath } from "./aws-paths.js";
export { configuredEndpoint } from "./endpoints.js";
export { ssoSessionExpired, ssoSessionFor } from "./sso.js";
export type { SsoSessionState } from "./sso.js";
export type { AwsCredentialIdentity, AwsCredentialIdentityProvider } from "@smithy/types";
