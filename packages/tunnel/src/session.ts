import type { EventEmitter } from "node:events";
import type { Duplex } from "node:stream";
import type { TunnelProblem } from "./errors.js";

/** Events every tunnel session emits. */
export interface TunnelSessionEvents {
  /** The session is over: a problem when it died, undefined when it was closed on purpose. */
  end: [TunnelProblem | undefined];
  /** The bastion could not reach the database (the agent's ConnectToPortError, or the plugin's message). */
  "destination-error": [TunnelProblem];
  /** After a destination error: a stream reached the database again (it answered). */
  "destination-ok": [];
}

/**
 * One SSM session to host:port through a bastion, whatever the driver. The supervisor keeps a pool of them.
 */
export interface TunnelSession extends EventEmitter<TunnelSessionEvents> {
  /** The SSM session id (safe to show). */
  readonly id: string;
  readonly driver: "native" | "plugin";
  /** The bastion this session runs through. */
  readonly instanceId: string;
  /** One connection only (old agents): the session is used once, then replaced. */
  readonly singleUse: boolean;
  /** The agent's version as the session's handshake reported it (native); undefined when the driver cannot tell. */
  readonly agentVersion?: string;
  /** Streams open now. */
  readonly activeStreams: number;
  /** Whether openStream can be called (not ended, and not a spent single-use session). */
  readonly available: boolean;
  readonly ended: boolean;
  /**
   * How long data sent on the session has gone unacknowledged (drivers that can tell: native). A session that
   * carries nothing (a black hole) shows here within seconds, long before a periodic probe would find it.
   */
  readonly unacknowledgedForMs?: number;
  /** How long the far side has sent nothing (drivers that can tell: native). */
  readonly quietForMs?: number;
  /**
   * Checks the path to the bastion's agent without touching the database (native: a smux NOP the agent
   * acknowledges). Rejects with a ProxyError when the path is dead. Drivers that cannot do this leave it out
   * and are probed end to end through the database instead.
   */
  checkAlive?(): Promise<void>;
  /** Opens a byte stream to host:port. Rejects with a ProxyError. */
  openStream(signal?: AbortSignal): Promise<Duplex>;
  /** Ends the session here and on AWS (TerminateSession). Open streams are destroyed. */
  close(): Promise<void>;
}

/** Builds sessions for one target; one per driver. */
export interface SessionFactory {
  readonly driver: "native" | "plugin";
  open(instanceId: string, signal: AbortSignal): Promise<TunnelSession>;
}
