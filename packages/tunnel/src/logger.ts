import type { ProxyLogger } from "@rdsd/proxy";

/** The logging tunnels need (the proxy's shape, so the daemon passes one logger to both). Fields never hold secrets. */
export type TunnelLogger = ProxyLogger;

export { silentLogger } from "@rdsd/proxy";
