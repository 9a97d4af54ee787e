// Version rules both sides apply to each other's a.b.c.d version strings.

/** Compares dotted numeric versions; undefined when either is malformed or the part counts differ (as the official code treats them). */
export function compareVersions(a: string, b: string): -1 | 0 | 1 | undefined {
  const pa = a.split(".");
  const pb = b.split(".");
  if (pa.length !== pb.length) return undefined;
  for (let i = 0; i < pa.length; i++) {
    const x = Number(pa[i]);
    const y = Number(pb[i]);
    if (!/^\d+$/.test(pa[i] ?? "") || !/^\d+$/.test(pb[i] ?? "")) return undefined;
    if (x > y) return 1;
    if (x < y) return -1;
  }
  return 0;
}

function isAbove(version: string, threshold: string): boolean {
  return compareVersions(version, threshold) === 1;
}

function isAtLeast(version: string, threshold: string): boolean {
  const c = compareVersions(version, threshold);
  return c === 0 || c === 1;
}

/** Client side: the agent speaks smux (multiplexed mode) when its version is above 3.0.196.0. */
export function agentSupportsMultiplexing(agentVersion: string): boolean {
  return isAbove(agentVersion, "3.0.196.0");
}

/** Client side: turn the smux keep-alive off when the agent's version is above 3.1.1511.0. */
export function agentSupportsKeepAliveOff(agentVersion: string): boolean {
  return isAbove(agentVersion, "3.1.1511.0");
}

/** Client side: the agent understands the TerminateSession flag above 2.3.722.0. */
export function agentSupportsTerminateSessionFlag(agentVersion: string): boolean {
  return isAbove(agentVersion, "2.3.722.0");
}

/** Agent side: multiplexed mode for LocalPortForwarding when the client's version is at least 1.1.70. */
export function clientSupportsMultiplexing(clientVersion: string): boolean {
  // The client reports three or four parts; compare on the parts it gave.
  const parts = clientVersion.split(".").length;
  const threshold = parts === 3 ? "1.1.70" : "1.1.70.0";
  return isAtLeast(clientVersion, threshold);
}

/** Agent side: the agent turns its smux keep-alive off only for clients above 1.2.331.0. */
export function clientSupportsKeepAliveOff(clientVersion: string): boolean {
  return isAbove(clientVersion, "1.2.331.0");
}
