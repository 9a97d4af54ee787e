import {
  DescribeInstanceInformationCommand,
  ResumeSessionCommand,
  SSMClient,
  StartSessionCommand,
  TerminateSessionCommand,
} from "@aws-sdk/client-ssm";
import type { InstanceInformationStringFilter } from "@aws-sdk/client-ssm";
import { describeCredentialError, isCredentialError } from "@rdsd/iam";
import type { AwsCredentialIdentityProvider } from "@rdsd/iam";
import { tunnelError } from "./errors.js";
import type { TunnelProblem } from "./errors.js";

/** The port-forwarding document rdsd always uses. */
export const PORT_FORWARDING_DOCUMENT = "AWS-StartPortForwardingSessionToRemoteHost";

export interface SsmApiOptions {
  region: string;
  credentials: AwsCredentialIdentityProvider;
  /** The profile the credentials come from, named in fixes ("aws sso login --profile X"). */
  profile?: string | undefined;
  /** SSM endpoint override (the emulator); otherwise the SDK's own resolution (AWS_ENDPOINT_URL_SSM included). */
  endpoint?: string | undefined;
  /** Use this client instead of building one (tests). */
  client?: SSMClient;
}

/** What StartSession and ResumeSession answer. TokenValue is a secret: never log it. */
export interface SessionCredentials {
  sessionId: string;
  tokenValue: string;
  streamUrl: string;
}

export interface StartSessionRequest {
  instanceId: string;
  host: string;
  port: number;
  /** The document's localPortNumber; the plugin driver passes its real port. */
  localPort?: number;
}

export interface ManagedInstance {
  instanceId: string;
  online: boolean;
  agentVersion: string | undefined;
}

/** The four SSM calls a tunnel makes, with every failure turned into a message and a fix. */
export class SsmApi {
  readonly client: SSMClient;
  readonly region: string;
  private readonly profile: string | undefined;

  constructor(options: SsmApiOptions) {
    this.region = options.region;
    this.profile = options.profile;
    this.client =
      options.client ??
      new SSMClient({
        region: options.region,
        credentials: options.credentials,
        ...(options.endpoint ? { endpoint: options.endpoint } : {}),
        maxAttempts: 3,
      });
  }

  /** The StartSession request JSON (Target, DocumentName, Parameters) as the plugin also wants it. */
  startSessionInput(request: StartSessionRequest) {
    return {
      Target: request.instanceId,
      DocumentName: PORT_FORWARDING_DOCUMENT,
      Parameters: {
        host: [request.host],
        portNumber: [String(request.port)],
        localPortNumber: [String(request.localPort ?? 0)],
      },
    };
  }

  async startSession(request: StartSessionRequest, signal?: AbortSignal): Promise<SessionCredentials> {
    try {
      const out = await this.client.send(new StartSessionCommand(this.startSessionInput(request)), { abortSignal: signal });
      if (!out.SessionId || !out.TokenValue || !out.StreamUrl) throw new Error("StartSession answered without SessionId, TokenValue or StreamUrl");
      return { sessionId: out.SessionId, tokenValue: out.TokenValue, streamUrl: out.StreamUrl };
    } catch (err) {
      throw tunnelError(this.describe(err, `StartSession on ${request.instanceId}`, request.instanceId));
    }
  }

  async resumeSession(sessionId: string, signal?: AbortSignal): Promise<SessionCredentials> {
    try {
      const out = await this.client.send(new ResumeSessionCommand({ SessionId: sessionId }), { abortSignal: signal });
      if (!out.TokenValue || !out.StreamUrl) throw new Error("ResumeSession answered without TokenValue or StreamUrl");
      return { sessionId: out.SessionId ?? sessionId, tokenValue: out.TokenValue, streamUrl: out.StreamUrl };
    } catch (err) {
      throw tunnelError(this.describe(err, `ResumeSession ${sessionId}`));
    }
  }

  /** Ends the session on AWS. A session AWS already forgot counts as terminated. */
  async terminateSession(sessionId: string, signal?: AbortSignal): Promise<void> {
    try {
      await this.client.send(new TerminateSessionCommand({ SessionId: sessionId }), { abortSignal: signal });
    } catch (err) {
      if (errorName(err) === "DoesNotExistException") return;
      throw tunnelError(this.describe(err, `TerminateSession ${sessionId}`));
    }
  }

  /** Managed instances matching the filters (all pages). */
  async describeInstances(filters: InstanceInformationStringFilter[], signal?: AbortSignal): Promise<ManagedInstance[]> {
    const out: ManagedInstance[] = [];
    let nextToken: string | undefined;
    try {
      do {
        const page = await this.client.send(new DescribeInstanceInformationCommand({ Filters: filters, NextToken: nextToken, MaxResults: 50 }), { abortSignal: signal });
        for (const info of page.InstanceInformationList ?? []) {
          if (!info.InstanceId) continue;
          out.push({ instanceId: info.InstanceId, online: info.PingStatus === "Online", agentVersion: info.AgentVersion });
        }
        nextToken = page.NextToken;
      } while (nextToken);
    } catch (err) {
      throw tunnelError(this.describe(err, "DescribeInstanceInformation"));
    }
    return out;
  }

  destroy(): void {
    this.client.destroy();
  }

  /** Message and fix for a failed SSM call. Never includes request bodies (tokens). */
  describe(err: unknown, call: string, instanceId?: string): TunnelProblem {
    // The call never went out when its credentials could not be loaded: say what failed, not the call's name.
    if (isCredentialError(err)) return describeCredentialError(err, this.profile);
    const name = errorName(err);
    const detail = err instanceof Error ? err.message : String(err);
    const profileFlag = this.profile ? ` --profile ${this.profile}` : "";
    switch (name) {
      case "TargetNotConnected":
        return {
          message: `bastion ${instanceId ?? "(unknown)"} is not online in SSM (${call}: TargetNotConnected)`,
          fix: `start the instance and check its SSM agent and instance role: \`aws ssm describe-instance-information --filters Key=InstanceIds,Values=${instanceId ?? "<id>"}${profileFlag}\``,
        };
      case "InvalidInstanceId":
      case "InvalidTarget":
        return {
          message: `bastion ${instanceId ?? "(unknown)"} is not a managed instance in ${this.region} (${call}: ${name})`,
          fix: "check bastion.instanceId (or bastion.tag) and aws.region in the rdsd config",
        };
      case "AccessDeniedException":
      case "UnauthorizedOperation":
        return {
          message: `AWS refused ${call}: ${detail}`,
          fix: `allow ssm:StartSession on the bastion and on document ${PORT_FORWARDING_DOCUMENT}, plus ssm:ResumeSession, ssm:TerminateSession and ssm:DescribeInstanceInformation, for the identity of profile ${this.profile ?? "default"}`,
        };
      case "UnrecognizedClientException":
      case "InvalidSignatureException":
      case "InvalidClientTokenId":
        return {
          message: `AWS does not accept the credentials of profile ${this.profile ?? "default"} (${name})`,
          fix: `check the keys of profile ${this.profile ?? "default"} (\`aws sts get-caller-identity${profileFlag}\`); for SSO run \`aws sso login${profileFlag}\``,
        };
      case "ThrottlingException":
      case "TooManyRequestsException":
        return { message: `AWS throttled ${call}`, fix: "rdsd retries with backoff; lower tunnel.sessions if this persists" };
      case "DoesNotExistException":
        return { message: `${call}: the session no longer exists on AWS`, fix: "rdsd opens a new session by itself" };
      case "InvalidDocument":
        return { message: `${call}: document ${PORT_FORWARDING_DOCUMENT} is not available (${detail})`, fix: "check aws.region: the document exists in every commercial region" };
      default:
        break;
    }
    const code = (err as NodeJS.ErrnoException | undefined)?.code;
    if (code && /^(ECONNREFUSED|ENOTFOUND|EAI_AGAIN|ETIMEDOUT|ECONNRESET|EHOSTUNREACH|ENETUNREACH)$/.test(code)) {
      return { message: `cannot reach the SSM endpoint for ${this.region} (${code})`, fix: "check this machine's network connection and proxy settings" };
    }
    return { message: `${call} failed: ${detail}`, fix: "see the rdsd log (`rdsd logs`); rdsd keeps retrying" };
  }
}

function errorName(err: unknown): string | undefined {
  return err instanceof Error ? err.name : undefined;
}
