import type { Duplex } from "node:stream";
import type { Dialer } from "@rdsd/proxy";
import type { Supervisor } from "./supervisor.js";

/** The proxy's Dialer over a supervised tunnel: a stream per connection, waiting (bounded) through a rebuild. */
export class TunnelDialer implements Dialer {
  readonly carrier = "the SSM tunnel";

  constructor(
    private readonly supervisor: Supervisor,
    private readonly description: string,
    /** How long a connecting client waits for a tunnel being rebuilt. */
    private readonly waitMs = 15_000,
  ) {}

  dial(signal: AbortSignal, use: "client" | "spare" = "client"): Promise<Duplex> {
    return this.supervisor.acquire(signal, this.waitMs, use === "spare");
  }

  describe(): string {
    return this.description;
  }

  markIdle(stream: Duplex, idle: boolean): void {
    this.supervisor.markIdle(stream, idle);
  }

  usable(stream: Duplex): boolean | Promise<boolean> {
    return this.supervisor.usable(stream);
  }

  singleUse(): boolean {
    return this.supervisor.singleUse;
  }
}
