import type { TargetConfig } from "@rdsd/config";
import type { Problem, TargetState } from "@rdsd/control";
import type { AwsCredentialIdentityProvider } from "@rdsd/iam";
import type { Dialer } from "@rdsd/proxy";
import type { DaemonLogger } from "./logger.js";

/** What the daemon needs of a target's SSM tunnel (the supervisor in @rdsd/tunnel). */
export interface TunnelHandle {
  /** Streams to the database through the tunnel; waits while the tunnel is being rebuilt. */
  readonly dialer: Dialer;
  start(): Promise<void>;
  /** Terminates the sessions on AWS. */
  stop(): Promise<void>;
  restart(): Promise<void>;
  status(): { state: TargetState; sessionIds: string[]; lastError: Problem | null; warnings: Problem[] };
  /** Bastion check for `rdsd test` and `doctor`: the instance, whether SSM sees it online, and a warning about its agent. */
  checkBastion?(): Promise<BastionCheck>;
  on(event: "state", listener: () => void): unknown;
}

export interface BastionCheck {
  instanceId: string;
  online: boolean;
  detail: string;
  /** The instance's SSM agent is too old to multiplex: the fix is to update it. */
  warning: Problem | null;
}

export interface TunnelContext {
  region: string;
  profile: string | undefined;
  /** The daemon's credentials for the profile (shared with IAM token signing). */
  credentials: AwsCredentialIdentityProvider;
  /** The SSM endpoint configured for the profile (AWS_ENDPOINT_URL_SSM, its services section or endpoint_url); undefined = AWS's. */
  endpoint?: string | undefined;
  logger: DaemonLogger;
}

export type TunnelFactory = (target: TargetConfig, context: TunnelContext) => TunnelHandle;
