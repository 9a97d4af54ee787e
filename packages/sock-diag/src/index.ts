export { ipLiteralBytes, type IpLiteral } from "./ip-literal.js";
export type { SockDiagStatus, TcpSocketInfo } from "./addon.js";
export { sockDiagAvailable, SockDiagUnavailableError, tcpSocketInfo, tcpSocketOwner, type Endpoint } from "./tcp-socket.js";
