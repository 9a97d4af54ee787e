export { ipLiteralBytes, type IpLiteral } from "./ip-literal.js";
export type { SockDiagStatus, TcpSocketInfo } from "./addon.js";
export { sockDiagAvailable, SockDiagUnavailableError, tcpSocketInfo, tcpSocketOwner, type Endpoint } from "./tcp-socket.js";
export { loadSdNotify, SD_NOTIFY_ADDON_PATH, type SdNotifySend } from "./sd-notify.js";
export type { PeerCredentials } from "./addon.js";
export { peerCredentialsAvailable, unixPeerCredentials } from "./peer-credentials.js";
export { IN_USE_PROBE_TIMEOUT_MS, unixSocketInUse } from "./unix-socket-in-use.js";
