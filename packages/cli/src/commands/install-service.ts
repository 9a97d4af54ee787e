import { mkdir, realpath, stat, writeFile } from "node:fs/promises";
import { homedir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { resolveConfigPath } from "@rdsd/config";
import { CliError, EXIT } from "../exit.js";
import { launchdPlist, LAUNCHD_LABEL, systemdUnit, type ServiceCommand } from "../service-units.js";

const RDSD_BIN = fileURLToPath(new URL("../../bin/rdsd.js", import.meta.url));

/** `rdsd install-service [--print]`: the systemd user unit (Linux) or LaunchAgent (macOS) for this machine. */
export async function installServiceCommand(opts: { config?: string; print?: boolean; platform?: string }): Promise<number> {
  const platform = opts.platform ?? process.platform;
  const home = homedir();
  const command: ServiceCommand = { node: process.execPath, script: await realpath(RDSD_BIN), config: opts.config ? await existingConfig(opts.config, home) : undefined };
  let path: string;
  let text: string;
  let next: string;
  if (platform === "linux") {
    const configHome = process.env.XDG_CONFIG_HOME?.startsWith("/") ? process.env.XDG_CONFIG_HOME : join(home, ".config");
    path = join(configHome, "systemd", "user", "rdsd.service");
    // Type=notify needs the sd_notify addon this same install built (or did not, without a compiler).
    const { loadSdNotify } = await import("@rdsd/sock-diag");
    text = systemdUnit(command, { notify: loadSdNotify().ok });
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

/**
 * The --config file as the unit must name it: `~` expanded (a service manager never expands it) and
 * absolute. A file that is not there is refused now rather than found missing at every service start.
 */
async function existingConfig(flag: string, home: string): Promise<string> {
  const path = resolveConfigPath({ flag, env: {}, home });
  const found = await stat(path).catch((err: NodeJS.ErrnoException) => err);
  if (found instanceof Error) {
    const why = found.code === "ENOENT" ? "there is no such file" : found.message;
    throw new CliError(`no config file at ${path} (${why})`, "create it first (config/example.yaml in the rdsd sources is a starting point), or name the right file with --config", EXIT.failure);
  }
  if (!found.isFile()) throw new CliError(`${path} is not a file`, "name the config file itself with --config", EXIT.failure);
  return path;
}
