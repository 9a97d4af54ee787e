import { loadSdNotify, type SdNotifySend } from "@rdsd/sock-diag";
import type { TargetStatus } from "@rdsd/control";
import type { DaemonLogger } from "./logger.js";

/**
 * What the daemon tells systemd under `Type=notify` (sd_notify(3)): READY=1 once every listener is bound,
 * STATUS= with the targets' states (shown by `systemctl status`), RELOADING=1 around a reload, STOPPING=1.
 * Without $NOTIFY_SOCKET (not under systemd, or Type=simple) every call does nothing.
 */
export interface ServiceNotifier {
  ready(targets: TargetStatus[]): void;
  status(targets: TargetStatus[]): void;
  reloading(): void;
  stopping(): void;
}

/**
 * Reads $NOTIFY_SOCKET once and removes it from the environment, so the processes the daemon starts
 * (session-manager-plugin) cannot speak for it. A send that fails is logged, never thrown: systemd then
 * times the start out and says so, which is the right outcome, and the daemon keeps serving meanwhile.
 */
export function serviceNotifier(logger: DaemonLogger, env: NodeJS.ProcessEnv = process.env, load: () => ReturnType<typeof loadSdNotify> = loadSdNotify): ServiceNotifier {
  const address = env.NOTIFY_SOCKET;
  delete env.NOTIFY_SOCKET;
  if (!address) return { ready() {}, status() {}, reloading() {}, stopping() {} };
  const loaded = load();
  if (!loaded.ok) {
    logger.warn(`NOTIFY_SOCKET is set (a systemd Type=notify unit) but rdsd cannot send to it: ${loaded.reason}`, {
      fix: "reinstall rdsd where a C compiler, make and python3 are present, or set Type=simple in the unit (`rdsd install-service` does when the addon is missing)",
    });
  }
  const send: SdNotifySend | undefined = loaded.ok ? loaded.send : undefined;
  let lastStatus = "";
  const notify = (lines: string[]) => {
    if (!send) return;
    try {
      send(address, lines.join("\n"));
    } catch (err) {
      logger.warn("cannot notify systemd", { socket: address, error: (err as Error).message, message: lines[0] });
    }
  };
  return {
    ready(targets) {
      lastStatus = statusLine(targets);
      notify(["READY=1", `STATUS=${lastStatus}`]);
    },
    status(targets) {
      const line = statusLine(targets);
      if (line === lastStatus) return;
      lastStatus = line;
      notify([`STATUS=${line}`]);
    },
    reloading() {
      // MONOTONIC_USEC: systemd 253+ wants it beside RELOADING=1; libuv's hrtime is CLOCK_MONOTONIC on Linux.
      notify(["RELOADING=1", `MONOTONIC_USEC=${process.hrtime.bigint() / 1000n}`, "STATUS=reloading the configuration"]);
    },
    stopping() {
      notify(["STOPPING=1", "STATUS=stopping: closing listeners, terminating SSM sessions"]);
    },
  };
}

/** One line for `systemctl status`: "orders-dev ready, billing-dev connecting" (no newlines, no secrets). */
export function statusLine(targets: TargetStatus[]): string {
  if (targets.length === 0) return "no targets configured";
  return targets.map((t) => `${t.name} ${t.state}`).join(", ").replace(/[\r\n]/g, " ");
}
