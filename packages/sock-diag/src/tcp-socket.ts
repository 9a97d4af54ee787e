// Which local user owns a TCP socket, by its exact 4-tuple, from the kernel through netlink sock_diag.

import { loadSockDiag, type SockDiagStatus, type TcpSocketInfo } from "./addon.js";
import { ipLiteralBytes, type IpLiteral } from "./ip-literal.js";

/** One end of a TCP connection as Node reports it (an IP literal and a port). */
export interface Endpoint {
  address: string;
  port: number;
}

/** Thrown when the addon cannot be used here; `reason` says why (not built, not Linux, kernel support). */
export class SockDiagUnavailableError extends Error {
  override readonly name = "SockDiagUnavailableError";
  constructor(readonly reason: string) {
    super(`netlink sock_diag unavailable: ${reason}`);
  }
}

/** Whether lookups work on this machine: the addon is built, loads, and the kernel answers through it. */
export function sockDiagAvailable(): SockDiagStatus {
  const state = loadSockDiag();
  return state.ok ? { ok: true } : { ok: false, reason: state.reason };
}

/**
 * The kernel's record of the TCP socket whose local end is `local` and remote end `remote`, or undefined
 * when no socket with an owner has exactly that tuple (never existed, closed, or only in TIME_WAIT).
 * Throws TypeError for an endpoint that is not an IP literal and a port, SockDiagUnavailableError when the
 * addon cannot be used, and an Error with `code`/`errno` when the kernel refuses the request.
 */
export function tcpSocketInfo(local: Endpoint, remote: Endpoint): TcpSocketInfo | undefined {
  const localAddress = endpointBytes(local, "local");
  const remoteAddress = endpointBytes(remote, "remote");
  if (localAddress.family !== remoteAddress.family) {
    throw new TypeError(`local ${local.address} and remote ${remote.address} are not the same address family`);
  }
  const state = loadSockDiag();
  if (!state.ok) throw new SockDiagUnavailableError(state.reason);
  return state.addon.lookup(localAddress.family, localAddress.bytes, local.port, remoteAddress.bytes, remote.port) ?? undefined;
}

/** The uid owning the TCP socket `local` -> `remote`, or undefined (see tcpSocketInfo, which this wraps). */
export function tcpSocketOwner(local: Endpoint, remote: Endpoint): number | undefined {
  return tcpSocketInfo(local, remote)?.uid;
}

function endpointBytes(endpoint: Endpoint, which: "local" | "remote"): IpLiteral {
  if (typeof endpoint !== "object" || endpoint === null) throw new TypeError(`${which} endpoint must be { address, port }`);
  const { address, port } = endpoint;
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new TypeError(`${which} port must be an integer from 0 to 65535, got ${String(port)}`);
  const literal = typeof address === "string" ? ipLiteralBytes(address) : undefined;
  if (!literal) throw new TypeError(`${which} address must be an IPv4 or IPv6 literal, got ${JSON.stringify(address)}`);
  return literal;
}
