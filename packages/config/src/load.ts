import { readFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { ConfigError } from "./issues.js";
import { parseConfig, type ParseOptions } from "./parse.js";
import type { RdsdConfig } from "./types.js";

/** What decides where the config file is. */
export interface ConfigPathSources {
  /** The --config flag, if given. */
  flag?: string;
  /** The process environment ($RDSD_CONFIG, $XDG_CONFIG_HOME). */
  env: NodeJS.ProcessEnv;
  /** The user's home directory. */
  home: string;
}

function expandHome(file: string, home: string): string {
  if (file === "~") return home;
  if (file.startsWith("~/")) return path.join(home, file.slice(2));
  return file;
}

/**
 * The config file to use: --config, else $RDSD_CONFIG, else $XDG_CONFIG_HOME/rdsd/config.yaml,
 * else ~/.config/rdsd/config.yaml. Always absolute. Empty values count as unset; a relative
 * $XDG_CONFIG_HOME is ignored, as the XDG spec says.
 */
export function resolveConfigPath(sources: ConfigPathSources): string {
  const chosen = [sources.flag, sources.env["RDSD_CONFIG"]].find((value) => value !== undefined && value !== "");
  if (chosen !== undefined) return path.resolve(expandHome(chosen, sources.home));
  const xdg = sources.env["XDG_CONFIG_HOME"];
  const configHome = xdg !== undefined && path.isAbsolute(xdg) ? xdg : path.join(sources.home, ".config");
  return path.join(configHome, "rdsd", "config.yaml");
}

/** Reads and validates a config file. Throws ConfigError (missing file, unreadable, invalid). */
export async function loadConfig(file: string, options: ParseOptions = {}): Promise<RdsdConfig> {
  const absoluteFile = path.resolve(file);
  let text: string;
  try {
    text = await readFile(absoluteFile, "utf8");
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const message =
      code === "ENOENT"
        ? `no config file here. To start, copy config/example.yaml from the rdsd sources to ${absoluteFile} and edit it, or name another file with --config FILE or $RDSD_CONFIG`
        : `cannot read the config file: ${(error as Error).message}`;
    throw new ConfigError(absoluteFile, [{ key: "", message }]);
  }
  return parseConfig(text, absoluteFile, { ...options, home: options.home ?? os.homedir() });
}
