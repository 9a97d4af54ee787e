import type { TargetConfig } from "@rdsd/config";
import { BastionResolver, createTunnel, SsmApi, type Tunnel } from "@rdsd/tunnel";
import type { TunnelContext, TunnelFactory, TunnelHandle } from "./tunnel-seam.js";

/**
 * The native and plugin drivers from @rdsd/tunnel behind the daemon's TunnelHandle. One SsmApi per
 * (region, profile) is shared by every target of the daemon; the SDK finds the endpoint itself
 * (AWS_ENDPOINT_URL_SSM points it at the emulator in the demo).
 */
export function ssmTunnelFactory(): TunnelFactory & { destroy(): void } {
  const apis = new Map<string, SsmApi>();
  const apiFor = (context: TunnelContext) => {
    const key = `${context.region}\0${context.profile ?? ""}`;
    let api = apis.get(key);
    if (!api) {
      api = new SsmApi({ region: context.region, profile: context.profile, credentials: context.credentials });
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
      return { state: s.state, sessionIds: s.sessionIds, lastError: s.lastError ? { message: s.lastError.message, fix: s.lastError.fix } : null };
    },
    checkBastion: () => checkWith(target, api),
    on: (event, listener) => tunnel.on(event, () => listener()),
  };
}

/** The target's bastion as SSM sees it (DescribeInstanceInformation): for `rdsd test` and `rdsd doctor`. */
export async function bastionCheck(target: TargetConfig, context: Omit<TunnelContext, "logger">): Promise<{ instanceId: string; online: boolean; detail: string }> {
  const api = new SsmApi({ region: context.region, profile: context.profile, credentials: context.credentials });
  try {
    return await checkWith(target, api);
  } finally {
    api.destroy();
  }
}

async function checkWith(target: TargetConfig, api: SsmApi): Promise<{ instanceId: string; online: boolean; detail: string }> {
  const bastion = target.bastion;
  if (!bastion) throw new Error(`target ${target.name} has no bastion`);
  const instanceId = await new BastionResolver(bastion, api).resolve(AbortSignal.timeout(15_000));
  const [found] = await api.describeInstances([{ Key: "InstanceIds", Values: [instanceId] }], AbortSignal.timeout(15_000));
  const how = "instanceId" in bastion ? "configured instance" : `tag ${bastion.tag.key}=${bastion.tag.value}`;
  if (!found) return { instanceId, online: false, detail: `${instanceId} is not a managed instance in SSM (${api.region}): check the id, and the instance's SSM agent and role` };
  return { instanceId, online: found.online, detail: found.online ? `${how}, agent ${found.agentVersion ?? "unknown"}` : `start the instance or its SSM agent (\`aws ssm describe-instance-information --filters Key=InstanceIds,Values=${instanceId}\`)` };
}
