import path from "node:path";

/** Where relative and "~" paths in a config file are anchored. */
export interface PathBase {
  /** The user's home directory, for "~" and "~/...". */
  home: string;
  /** The directory of the config file, for relative paths. */
  configDir: string;
}

/**
 * Makes a config path absolute: "~" and "~/x" go under the home directory, relative paths
 * under the config file's directory. Returns an error message for forms that cannot be
 * resolved ("~user/...", empty).
 */
export function resolveConfigRelativePath(raw: string, base: PathBase): { path: string } | { error: string } {
  if (raw === "") return { error: "expected a file path, got an empty string" };
  if (raw === "~") return { path: path.resolve(base.home) };
  if (raw.startsWith("~/")) return { path: path.resolve(base.home, raw.slice(2)) };
  if (raw.startsWith("~")) {
    return { error: `expected a file path; "~user/" is not supported (use "~/", an absolute path or a path relative to the config file), got ${JSON.stringify(raw)}` };
  }
  return { path: path.resolve(base.configDir, raw) };
}
