import { mkdir, realpath, writeFile } from "node:fs/promises";
import { homedir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { CliError, EXIT } from "../exit.js";
import { launchdPlist, LAUNCHD_LABEL, systemdUnit, type ServiceCommand } from "../service-units.js";

const RDSD_BIN = fileURLToPath(new URL("../../bin/rdsd.js", import.meta.url));

/** `rdsd install-service [--print]`: the systemd user unit (Linux) or LaunchAgent (macOS) for this machine. */
export async function installServiceCommand(opts: { config?: string; print?: boolean; platform?: string }): Promise<number> {
  const platform = opts.platform ?? process.platform;
  const home = homedir();
  const command: ServiceCommand = { node: process.execPath, script: await realpath(RDSD_BIN), config: opts.config ? resolve(opts.config) : undefined };
  let path: string;
  let text: string;
  let next: string;
  if (platform === "linux") {
    const configHome = process.env.XDG_CONFIG_HOME?.startsWith("/") ? process.env.XDG_CONFIG_HOME : join(home, ".config");
    path = join(configHome, "systemd", "user", "rdsd.service");
    text = systemdUnit(command);
    next = "systemctl --user daemon-reload && systemctl --user enable --now rdsd\n(and `loginctl enable-linger $USER` to keep it running after logout)";
  } else if (platform === "darwin") {
    path = join(home, "Library", "LaunchAgents", `${LAUNCHD_LABEL}.plist`);
    text = launchdPlist(command, join(home, "Library", "Logs"));
    next = `launchctl bootstrap gui/$(id -u) ${path}`;
  } else {
    throw new CliError(`no service manager support for ${platform}`, "run `rdsd daemon` under your platform's service manager", EXIT.failure);
  }
  if (opts.print) {
    process.stdout.write(text);
    return EXIT.ok;
  }
  await mkdir(dirname(path), { recursive: true });
  await writeFile(path, text, { mode: 0o644 });
  process.stdout.write(`wrote ${path}\nnext: ${next}\n`);
  return EXIT.ok;
}
