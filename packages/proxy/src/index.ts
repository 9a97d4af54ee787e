export * from "./errors.js";
export * from "./dialer.js";
export * from "./logger.js";
export * from "./upstream-auth.js";
export { secureUpstream, loginUpstream, type UpstreamTarget, type UpstreamSession } from "./upstream-login.js";
export * from "./target-proxy.js";
export { findSocketOwner, peerCredentialsAvailable, procNetAddress, procSocketOwnerUid, socketOwner, sockDiagOwnerLookup, type Endpoint, type ExactOwnerLookup, type OwnerLookupMethod, type ProcTableReader, type SocketOwner, type SocketOwnerOptions } from "./socket-owner.js";
