import type { BastionConfig } from "@rdsd/config";
import { systemClock } from "./clock.js";
import type { Clock } from "./clock.js";
import { tunnelError } from "./errors.js";
import type { SsmApi } from "./ssm-api.js";

/** How long an instance that failed is passed over when another online one carries the tag. */
const AVOID_MS = 5 * 60_000;

/**
 * Picks the bastion for each new session: a fixed instance id, or an online managed instance carrying
 * a tag (DescribeInstanceInformation), keeping the current one while it stays online and healthy.
 */
export class BastionResolver {
  private currentId: string | undefined;
  private readonly failedAt = new Map<string, number>();
  /** Agent versions seen by the last tag lookup, used once by agentVersion() instead of asking again. */
  private readonly seenAgents = new Map<string, string | undefined>();

  constructor(
    readonly config: BastionConfig,
    private readonly api: Pick<SsmApi, "describeInstances" | "region">,
    private readonly clock: Clock = systemClock,
  ) {
    if ("instanceId" in config) this.currentId = config.instanceId;
  }

  /** The instance sessions were last opened on. */
  get current(): string | undefined {
    return this.currentId;
  }

  describe(): string {
    return "instanceId" in this.config ? this.config.instanceId : `tag ${this.config.tag.key}=${this.config.tag.value}`;
  }

  /** The instance to open the next session on. Rejects with a ProxyError saying what to fix. */
  async resolve(signal?: AbortSignal): Promise<string> {
    if ("instanceId" in this.config) return this.config.instanceId;
    const { key, value } = this.config.tag;
    const found = await this.api.describeInstances([{ Key: `tag:${key}`, Values: [value] }, { Key: "PingStatus", Values: ["Online"] }], signal);
    for (const i of found) this.seenAgents.set(i.instanceId, i.agentVersion);
    const online = found.filter((i) => i.online).map((i) => i.instanceId);
    if (online.length === 0) {
      throw tunnelError({
        message: `no online bastion carries tag ${key}=${value} in ${this.api.region}`,
        fix: `start a bastion with that tag and a running SSM agent, or fix bastion.tag: \`aws ssm describe-instance-information --filters Key=tag:${key},Values=${value}\``,
      });
    }
    const now = this.clock.now();
    const healthy = online.filter((id) => now - (this.failedAt.get(id) ?? -Infinity) > AVOID_MS);
    const pick = healthy.includes(this.currentId ?? "") ? this.currentId! : (healthy[0] ?? online[0]!);
    this.currentId = pick;
    return pick;
  }

  /** The SSM agent version the instance reports (DescribeInstanceInformation's AgentVersion). */
  async agentVersion(instanceId: string, signal?: AbortSignal): Promise<string | undefined> {
    if (this.seenAgents.has(instanceId)) {
      const seen = this.seenAgents.get(instanceId);
      this.seenAgents.delete(instanceId);
      return seen;
    }
    const [found] = await this.api.describeInstances([{ Key: "InstanceIds", Values: [instanceId] }], signal);
    return found?.agentVersion;
  }

  /** A session on this instance failed in a way another bastion might not (offline, unreachable). */
  markFailed(instanceId: string): void {
    this.failedAt.set(instanceId, this.clock.now());
  }
}
