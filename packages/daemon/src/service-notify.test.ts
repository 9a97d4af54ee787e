import { describe, expect, it } from "vitest";
import type { TargetStatus } from "@rdsd/control";
import type { DaemonLogger } from "./logger.js";
import { serviceNotifier, statusLine } from "./service-notify.js";

// The degraded paths, with the addon loader replaced: the real datagrams are in test/daemon-notify.test.ts.

function recordingLogger(): DaemonLogger & { warnings: string[] } {
  const warnings: string[] = [];
  const logger = { warnings, debug() {}, info() {}, error() {}, warn: (message: string) => void warnings.push(message), child: () => logger, close: async () => {} };
  return logger;
}

const target = (name: string, state: TargetStatus["state"]) => ({ name, state }) as TargetStatus;

describe("serviceNotifier", () => {
  it("does nothing, and loads nothing, without NOTIFY_SOCKET", () => {
    const logger = recordingLogger();
    const notifier = serviceNotifier(logger, {}, () => {
      throw new Error("must not load the addon");
    });
    notifier.ready([target("a", "ready")]);
    notifier.stopping();
    expect(logger.warnings).toEqual([]);
  });

  it("says once why it cannot notify when the addon is missing, and keeps NOTIFY_SOCKET from child processes", () => {
    const logger = recordingLogger();
    const env: NodeJS.ProcessEnv = { NOTIFY_SOCKET: "/run/user/1000/systemd/notify" };
    const notifier = serviceNotifier(logger, env, () => ({ ok: false, reason: "the native addon is not built" }));
    notifier.ready([target("a", "ready")]);
    notifier.reloading();
    expect(logger.warnings).toEqual(["NOTIFY_SOCKET is set (a systemd Type=notify unit) but rdsd cannot send to it: the native addon is not built"]);
    expect(env.NOTIFY_SOCKET).toBeUndefined();
  });

  it("logs a failed send instead of throwing, and sends a STATUS line only when it changes", () => {
    const logger = recordingLogger();
    const sent: string[] = [];
    let fail = false;
    const notifier = serviceNotifier(logger, { NOTIFY_SOCKET: "@x" }, () => ({
      ok: true,
      send: (_address, message) => {
        if (fail) throw new Error("sendto(NOTIFY_SOCKET): Connection refused");
        sent.push(message);
      },
    }));
    notifier.ready([target("a", "connecting")]);
    notifier.status([target("a", "connecting")]);
    notifier.status([target("a", "ready")]);
    expect(sent).toEqual(["READY=1\nSTATUS=a connecting", "STATUS=a ready"]);
    fail = true;
    expect(() => notifier.stopping()).not.toThrow();
    expect(logger.warnings).toEqual(["cannot notify systemd"]);
  });

  it("keeps the status on one line", () => {
    expect(statusLine([])).toBe("no targets configured");
    expect(statusLine([target("a\nb", "failed"), target("c", "ready")])).toBe("a b failed, c ready");
  });
});
