import { isDeepStrictEqual } from "node:util";
import type { ConfigDiff, RdsdConfig } from "./types.js";

/**
 * Compares two configs target by target (by name, on the fully resolved settings), for a
 * reload that touches only what changed. Each target's resolved `aws` is part of it, so a change to the top-level
 * `aws` section changes exactly the targets that inherit it.
 */
export function diffConfigs(previous: RdsdConfig, next: RdsdConfig): ConfigDiff {
  const before = new Map(previous.targets.map((target) => [target.name, target]));
  const after = new Set(next.targets.map((target) => target.name));
  const awsChanged = !isDeepStrictEqual(previous.aws, next.aws);
  const diff: ConfigDiff = { added: [], removed: [], changed: [], unchanged: [], awsChanged };
  for (const target of next.targets) {
    const old = before.get(target.name);
    if (old === undefined) diff.added.push(target.name);
    else if (!isDeepStrictEqual(old, target)) diff.changed.push(target.name);
    else diff.unchanged.push(target.name);
  }
  for (const target of previous.targets) {
    if (!after.has(target.name)) diff.removed.push(target.name);
  }
  return diff;
}
