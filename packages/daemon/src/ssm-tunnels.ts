import type { TargetConfig } from "@rdsd/config";
import { configuredEndpoint, type AwsCredentialIdentityProvider } from "@rdsd/iam";
import { BastionResolver, createTunnel, oldAgentWarning, SsmApi, type SessionCredentials, type SsmApiOptions, type StartSessionRequest, type Tunnel } from "@rdsd/tunnel";
import type { DaemonLogger } from "./logger.js";
import type { SessionJournal } from "./session-journal.js";
import type { BastionCheck, TunnelContext, TunnelFactory, TunnelHandle } from "./tunnel-seam.js";

/** SsmApi that records every session it opens until it terminates it (see SessionJournal). */
class JournaledSsmApi extends SsmApi {
  private readonly profileName: string | null;

  constructor(
    options: SsmApiOptions,
    private readonly journal: SessionJournal,
  ) {
    super(options);
    this.profileName = options.profile ?? null;
  }

  override async startSession(request: StartSessionRequest, signal?: AbortSignal): Promise<SessionCredentials> {
    const session = await super.startSession(request, signal);
    await this.journal.opened({ sessionId: session.sessionId, region: this.region, profile: this.profileName, startedAt: new Date().toISOString() });
    return session;
  }

  override async terminateSession(sessionId: string, signal?: AbortSignal): Promise<void> {
    await super.terminateSession(sessionId, signal);
    await this.journal.ended(sessionId);
  }
}

/**
 * Terminates the SSM sessions an earlier run left open (it was killed before it could), then clears the
 * journal. Bounded in time: a session that cannot be terminated now ends on AWS's idle timeout.
 */
export async function terminateLeftoverSessions(journal: SessionJournal, credentialsFor: (profile: string | undefined) => AwsCredentialIdentityProvider, logger: DaemonLogger): Promise<void> {
  const leftovers = await journal.leftovers();
  await Promise.all(
    leftovers.map(async (entry) => {
      const profile = entry.profile ?? undefined;
      const endpoint = await configuredEndpoint("SSM", profile).catch(() => undefined);
      const api = new SsmApi({ region: entry.region, profile, credentials: credentialsFor(profile), endpoint });
      try {
        await api.terminateSession(entry.sessionId, AbortSignal.timeout(10_000));
        logger.info("terminated an SSM session left open by an earlier run", { session: entry.sessionId });
      } catch (err) {
        logger.warn("could not terminate an SSM session left open by an earlier run; AWS ends it at its idle timeout", { session: entry.sessionId, error: (err as Error).message });
      } finally {
        api.destroy();
      }
    }),
  );
  await journal.reset();
}

/**
 * The native and plugin drivers from @rdsd/tunnel behind the daemon's TunnelHandle. One SsmApi (one SSM client)
 * per (profile, region) is shared by every target of the daemon that uses it; the endpoint is the profile's
 * configured one (AWS_ENDPOINT_URL_SSM points every profile at the emulator in the demo).
 */
export function ssmTunnelFactory(options: { journal?: SessionJournal } = {}): TunnelFactory & { destroy(): void } {
  const apis = new Map<string, SsmApi>();
  const apiFor = (context: TunnelContext) => {
    const key = JSON.stringify([context.profile ?? null, context.region, context.endpoint ?? null]);
    let api = apis.get(key);
    if (!api) {
      const apiOptions = { region: context.region, profile: context.profile, credentials: context.credentials, endpoint: context.endpoint };
      api = options.journal ? new JournaledSsmApi(apiOptions, options.journal) : new SsmApi(apiOptions);
      apis.set(key, api);
    }
    return api;
  };
  const factory = (target: TargetConfig, context: TunnelContext): TunnelHandle => {
    const api = apiFor(context);
    const tunnel = createTunnel(target, { region: context.region, profile: context.profile, credentials: context.credentials, api, logger: context.logger });
    return adapt(tunnel, target, api);
  };
  return Object.assign(factory, {
    destroy() {
      for (const api of apis.values()) api.destroy();
      apis.clear();
    },
  });
}

function adapt(tunnel: Tunnel, target: TargetConfig, api: SsmApi): TunnelHandle {
  return {
    dialer: tunnel.dialer,
    start: async () => tunnel.start(),
    stop: () => tunnel.stop(),
    restart: () => tunnel.restart(),
    status: () => {
      const s = tunnel.status();
      return { state: s.state, sessionIds: s.sessionIds, lastError: s.lastError ? { message: s.lastError.message, fix: s.lastError.fix } : null, warnings: s.warnings.map((w) => ({ message: w.message, fix: w.fix })) };
    },
    checkBastion: () => checkWith(target, api),
    on: (event, listener) => tunnel.on(event, () => listener()),
  };
}

/** The target's bastion as SSM sees it (DescribeInstanceInformation): for `rdsd test` and `rdsd doctor`. */
export async function bastionCheck(target: TargetConfig, context: Omit<TunnelContext, "logger">): Promise<BastionCheck> {
  const api = new SsmApi({ region: context.region, profile: context.profile, credentials: context.credentials, endpoint: context.endpoint });
  try {
    return await checkWith(target, api);
  } finally {
    api.destroy();
  }
}

async function checkWith(target: TargetConfig, api: SsmApi): Promise<BastionCheck> {
  const bastion = target.bastion;
  if (!bastion) throw new Error(`target ${target.name} has no bastion`);
  const instanceId = await new BastionResolver(bastion, api).resolve(AbortSignal.timeout(15_000));
  const [found] = await api.describeInstances([{ Key: "InstanceIds", Values: [instanceId] }], AbortSignal.timeout(15_000));
  const how = "instanceId" in bastion ? "configured instance" : `tag ${bastion.tag.key}=${bastion.tag.value}`;
  if (!found) return { instanceId, online: false, detail: `${instanceId} is not a managed instance in SSM (${api.region}): check the id, and the instance's SSM agent and role`, warning: null };
  const warning = found.agentVersion === undefined ? null : (oldAgentWarning(instanceId, found.agentVersion) ?? null);
  return { instanceId, online: found.online, detail: found.online ? `${how}, agent ${found.agentVersion ?? "unknown"}` : `start the instance or its SSM agent (\`aws ssm describe-instance-information --filters Key=InstanceIds,Values=${instanceId}\`)`, warning };
}
