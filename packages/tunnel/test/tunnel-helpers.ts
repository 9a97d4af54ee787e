import type { Duplex } from "node:stream";
import type { TargetConfig } from "@rdsd/config";
import type { Emulator } from "@rdsd/ssm-emulator";
import { staticCredentialProvider } from "@rdsd/iam";
import { createTunnel } from "../src/tunnel.js";
import type { Tunnel, TunnelDeps, TunnelStatus } from "../src/tunnel.js";
import type { TunnelState } from "../src/supervisor.js";
import { RDS_HOST } from "./helpers.js";

export function target(overrides: Partial<Omit<TargetConfig, "tunnel">> & { tunnel?: Partial<TargetConfig["tunnel"]> } = {}): TargetConfig {
  const { tunnel, ...rest } = overrides;
  return {
    name: "orders-dev",
    host: RDS_HOST,
    port: 5432,
    listen: [{ host: "127.0.0.1", port: 0 }],
    user: "iam_user",
    aws: {},
    auth: { kind: "iam" },
    tls: { ca: "rds" },
    clientTls: false,
    bastion: { instanceId: "i-0e1d2c3b4a5968778" },
    pool: false,
    ...rest,
    tunnel: { driver: "native", mode: "eager", idleTimeoutMs: 600_000, sessions: 1, pluginPath: "session-manager-plugin", ...tunnel },
  };
}

/** Fast timings so faults are found within a test's time. */
export const FAST: Pick<TunnelDeps, "supervisor" | "channel" | "dialWaitMs"> = {
  supervisor: { livenessIntervalMs: 300, wakeCheckIntervalMs: 100, probeTimeoutMs: 1_000, backoff: { initialMs: 50, maxMs: 500 }, openTimeoutMs: 5_000 },
  channel: { ackStallTimeoutMs: 1_000, resumeTimeoutMs: 3_000 },
  dialWaitMs: 10_000,
};

export function tunnelFor(emulator: Emulator, t: TargetConfig, deps: Partial<TunnelDeps> = {}): Tunnel {
  return createTunnel(t, {
    region: emulator.region,
    endpoint: emulator.endpoint,
    credentials: staticCredentialProvider(emulator.credentials),
    ...FAST,
    ...deps,
  });
}

/** Resolves with the status once the tunnel reaches `state` (now or later). */
export function waitForState(tunnel: Tunnel, state: TunnelState | ((s: TunnelStatus) => boolean), timeoutMs = 10_000): Promise<TunnelStatus> {
  const matches = typeof state === "function" ? state : (s: TunnelStatus) => s.state === state;
  return new Promise((resolve, reject) => {
    const now = tunnel.status();
    if (matches(now)) return resolve(now);
    const timer = setTimeout(() => {
      tunnel.off("state", listener);
      reject(new Error(`tunnel did not reach ${String(state)} within ${timeoutMs} ms (is ${tunnel.status().state}: ${tunnel.status().lastError?.message ?? "no error"})`));
    }, timeoutMs);
    const listener = (s: TunnelStatus) => {
      if (!matches(s)) return;
      clearTimeout(timer);
      tunnel.off("state", listener);
      resolve(s);
    };
    tunnel.on("state", listener);
  });
}

/** Opens a stream, sends SSLRequest, expects 'S', then checks an echo: the whole path works. */
export async function roundTrip(tunnel: Tunnel, text = "ping"): Promise<Duplex> {
  const stream = await tunnel.dialer.dial(AbortSignal.timeout(10_000));
  const reply = new Promise<string>((resolve, reject) => {
    let got = "";
    const onData = (b: Buffer) => {
      got += b.toString("latin1");
      if (got.length >= 1 + text.length) {
        stream.off("data", onData);
        resolve(got);
      }
    };
    stream.on("data", onData);
    stream.once("error", reject);
  });
  stream.write(Buffer.from([0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]));
  stream.write(text);
  const answer = await reply;
  if (answer !== `S${text}`) throw new Error(`unexpected answer ${JSON.stringify(answer)}`);
  return stream;
}
