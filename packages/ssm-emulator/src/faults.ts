/** Faults that stay on until cleared; set per session or per instance (an instance's apply to all its sessions). */
export interface FaultSettings {
  /** The agent stops acknowledging the client's messages (the client keeps retransmitting). */
  stopAcknowledging?: boolean;
  /** The data channel accepts everything and carries nothing: no acknowledgements, no data, no close. */
  blackHole?: boolean;
  /** Dialing the destination fails: the client gets ConnectToPortError. */
  destinationUnreachable?: boolean;
  /** Added one-way delay (ms) on every websocket message in each direction. */
  latencyMs?: number;
  /**
   * Instances only: StartSession on the instance is answered after this long (ms), a slow or stuck API. A caller
   * that gives up first gets no session, as if its request had never arrived.
   */
  startSessionDelayMs?: number;
  /** The data channel's websocket upgrade is answered after this long (ms): a slow or stuck ssmmessages endpoint. */
  channelAcceptDelayMs?: number;
}

export type FaultName = keyof FaultSettings;

/** The channel_closed reasons the emulator can send, with the Output text the client shows. */
export const CloseReasons = {
  "idle-timeout": "Your session timed out due to inactivity and has been terminated.",
  "max-duration": "Your session has reached the maximum session duration and has been terminated.",
  terminated: "Your session has been terminated.",
} as const;
export type CloseReason = keyof typeof CloseReasons;

export function mergeFaults(...sets: (FaultSettings | undefined)[]): Required<FaultSettings> {
  const out: Required<FaultSettings> = { stopAcknowledging: false, blackHole: false, destinationUnreachable: false, latencyMs: 0, startSessionDelayMs: 0, channelAcceptDelayMs: 0 };
  for (const s of sets) {
    if (!s) continue;
    out.stopAcknowledging ||= s.stopAcknowledging === true;
    out.blackHole ||= s.blackHole === true;
    out.destinationUnreachable ||= s.destinationUnreachable === true;
    out.latencyMs = Math.max(out.latencyMs, s.latencyMs ?? 0);
    out.startSessionDelayMs = Math.max(out.startSessionDelayMs, s.startSessionDelayMs ?? 0);
    out.channelAcceptDelayMs = Math.max(out.channelAcceptDelayMs, s.channelAcceptDelayMs ?? 0);
  }
  return out;
}

/** Validates a fault patch from an admin call. */
export function parseFaultSettings(value: unknown): FaultSettings {
  if (typeof value !== "object" || value === null) throw new Error("faults must be an object");
  const v = value as Record<string, unknown>;
  const out: FaultSettings = {};
  for (const key of ["stopAcknowledging", "blackHole", "destinationUnreachable"] as const) {
    if (v[key] === undefined) continue;
    if (typeof v[key] !== "boolean") throw new Error(`${key} must be true or false`);
    out[key] = v[key];
  }
  for (const key of ["latencyMs", "startSessionDelayMs", "channelAcceptDelayMs"] as const) {
    if (v[key] === undefined) continue;
    const n = v[key];
    if (typeof n !== "number" || !Number.isFinite(n) || n < 0 || n > 60_000) throw new Error(`${key} must be 0..60000`);
    out[key] = n;
  }
  for (const key of Object.keys(v)) {
    if (!["stopAcknowledging", "blackHole", "destinationUnreachable", "latencyMs", "startSessionDelayMs", "channelAcceptDelayMs"].includes(key)) throw new Error(`unknown fault ${key}`);
  }
  return out;
}
