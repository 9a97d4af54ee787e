import { openNativeSession } from "./native-session.js";
import type { NativeSessionOptions } from "./native-session.js";
import type { SessionFactory, TunnelSession } from "./session.js";

/** The default driver: rdsd's own data-channel client, no external tools. */
export class NativeDriver implements SessionFactory {
  readonly driver = "native" as const;

  constructor(private readonly options: Omit<NativeSessionOptions, "instanceId">) {}

  open(instanceId: string, signal: AbortSignal): Promise<TunnelSession> {
    return openNativeSession({ ...this.options, instanceId }, signal);
  }
}
