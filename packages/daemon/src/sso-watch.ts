import { spawn } from "node:child_process";
import { access, constants } from "node:fs/promises";
import { delimiter, join } from "node:path";
import type { RdsdConfig } from "@rdsd/config";
import type { DaemonLogger } from "./logger.js";
import { ssoSessionsInUse } from "./sso-sessions.js";

/** Shows one desktop notification; never throws (a missing or failing notifier is not the daemon's problem). */
export type DesktopNotify = (title: string, body: string) => void;

export const SSO_WARNING_MS = 15 * 60_000;

/**
 * The desktop's notifier: `notify-send` on Linux inside a graphical session (DISPLAY, WAYLAND_DISPLAY or a session
 * bus), `osascript` on macOS; undefined when there is none (a server, a CI machine).
 */
export async function desktopNotifier(env: NodeJS.ProcessEnv = process.env, platform: NodeJS.Platform = process.platform): Promise<DesktopNotify | undefined> {
  if (platform === "darwin") {
    return (title, body) => run("osascript", ["-e", `display notification ${appleString(body)} with title ${appleString(title)}`], env);
  }
  if (!env["DISPLAY"] && !env["WAYLAND_DISPLAY"] && !env["DBUS_SESSION_BUS_ADDRESS"]) return undefined;
  const notifySend = await onPath("notify-send", env);
  if (notifySend === undefined) return undefined;
  return (title, body) => run(notifySend, ["--app-name=rdsd", title, body], env);
}

/**
 * Watches the SSO sessions the targets depend on: one within 15 minutes of its end, or past it, is logged once and
 * shown once on the desktop (when enabled), per login profile and per expiry: a renewed session that nears its
 * new end is told again.
 */
export class SsoExpiryWatch {
  readonly #told = new Set<string>();
  #timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly logger: DaemonLogger,
    private readonly notify: DesktopNotify | undefined,
    private readonly now: () => Date = () => new Date(),
  ) {}

  async check(config: RdsdConfig): Promise<void> {
    const now = this.now();
    for (const s of await ssoSessionsInUse(config, now)) {
      const left = s.expiresAt === null ? 0 : s.expiresAt.getTime() - now.getTime();
      if (left > SSO_WARNING_MS) continue;
      const key = `${s.loginProfile}\0${s.expiresAt?.toISOString() ?? "none"}`;
      if (this.#told.has(key)) continue;
      this.#told.add(key);
      const when = left <= 0 ? "has ended" : `ends in ${Math.max(1, Math.round(left / 60_000))} min`;
      const title = `rdsd: SSO session for profile ${s.loginProfile} ${when}`;
      const body = `Targets ${s.targets.join(", ")} need it. Run \`aws sso login --profile ${s.loginProfile}\` (or \`rdsd login\`).`;
      this.logger.warn(`SSO session for profile ${s.loginProfile} ${when}`, { session: s.session, targets: s.targets.join(","), fix: `run \`aws sso login --profile ${s.loginProfile}\`` });
      if (config.notifications.desktop) this.notify?.(title, body);
    }
  }

  /** Checks now and every `intervalMs` with the config `current()` returns, until stop(). */
  start(current: () => RdsdConfig | undefined, intervalMs = 60_000): void {
    const tick = () => {
      const config = current();
      if (config) this.check(config).catch((err: unknown) => this.logger.warn("could not check SSO sessions", { error: (err as Error).message }));
    };
    tick();
    this.#timer = setInterval(tick, intervalMs);
    this.#timer.unref();
  }

  stop(): void {
    clearInterval(this.#timer);
  }
}

function run(command: string, args: string[], env: NodeJS.ProcessEnv): void {
  try {
    const child = spawn(command, args, { env, stdio: "ignore", detached: false });
    child.on("error", () => {});
  } catch {
    // no notifier: the log line stays
  }
}

async function onPath(name: string, env: NodeJS.ProcessEnv): Promise<string | undefined> {
  for (const dir of (env["PATH"] ?? "").split(delimiter).filter(Boolean)) {
    const candidate = join(dir, name);
    if (await access(candidate, constants.X_OK).then(() => true, () => false)) return candidate;
  }
  return undefined;
}

/** An AppleScript string literal. */
function appleString(text: string): string {
  return `"${text.replace(/\\/g, "\\\\").replace(/"/g, '\\"')}"`;
}
