/** A managed instance (the bastion) the emulator pretends to host an agent on. */
export interface InstanceConfig {
  instanceId: string;
  tags?: Record<string, string>;
  /** Starts offline when false (PingStatus ConnectionLost). Default true. */
  online?: boolean;
  /** Overrides the emulator's agent version for this instance. */
  agentVersion?: string;
  /** The account that owns it (only that account's keys see it and start sessions on it); default: the first key's account. */
  account?: string;
}

export interface InstanceState {
  instanceId: string;
  tags: Record<string, string>;
  online: boolean;
  agentVersion: string;
  account: string;
  registeredAt: Date;
  lastPingAt: Date;
}

const INSTANCE_ID = /^(i|mi)-[0-9a-f]{8,17}$/;

export function isInstanceId(text: string): boolean {
  return INSTANCE_ID.test(text);
}

/** Parses --instance `ID` or `ID,tag:KEY=VALUE,tag:KEY2=VALUE2,account:123456789012`. */
export function parseInstanceArg(text: string): InstanceConfig {
  const [id, ...rest] = text.split(",");
  const instanceId = (id ?? "").trim();
  if (!isInstanceId(instanceId)) throw new Error(`--instance wants an id like i-0123456789abcdef0, got ${JSON.stringify(instanceId)}`);
  const tags: Record<string, string> = {};
  let account: string | undefined;
  for (const part of rest) {
    const owner = /^account:(\d{12})$/.exec(part.trim());
    if (owner) {
      account = owner[1]!;
      continue;
    }
    const m = /^tag:([^=]+)=(.*)$/.exec(part.trim());
    if (!m) throw new Error(`--instance tags are written tag:KEY=VALUE, got ${JSON.stringify(part)}`);
    tags[m[1]!] = m[2]!;
  }
  return account === undefined ? { instanceId, tags } : { instanceId, tags, account };
}
