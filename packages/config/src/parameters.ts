// `parameters: { NAME: VALUE }` and `readOnly`: session settings sent upstream in the startup `options`.
// Names are checked as PostgreSQL GUC names and values turned into the text PostgreSQL reads; whether the
// server knows the setting is for the server to say (at login).

import { isScalar, type Node } from "yaml";
import type { Entry, YamlReader } from "./yaml-reader.js";

/** What one layer wrote under `parameters`: lowercased name -> value text, and the value's node. */
export type ParameterLayer = Map<string, { value: string; node: Node | null }>;

/** The setting `readOnly: true` stands for. */
export const READ_ONLY_PARAMETER = "default_transaction_read_only";

/** A GUC name: an identifier, or dotted identifiers for extension settings (pg_stat_statements.track). */
const GUC_NAME = /^[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*)*$/;

/** PostgreSQL's longest identifier (NAMEDATALEN - 1). */
const MAX_NAME_BYTES = 63;

/** "10m" means minutes in rdsd's durations but is no unit at all to PostgreSQL ("min" is). */
const MINUTES_AS_M = /^\s*(\d+(?:\.\d+)?)\s*m\s*$/;

/** Reads `parameters`: a mapping of GUC names to strings, numbers, booleans or durations. */
export function readParameters(reader: YamlReader, entry: Entry): ParameterLayer | undefined {
  const view = reader.map(entry.value, entry.path, { known: "any" }, "a mapping of PostgreSQL settings, e.g. { statement_timeout: 30s, search_path: app }", entry.keyNode);
  if (view === undefined) return undefined;
  const parameters: ParameterLayer = new Map();
  let ok = true;
  for (const item of view.entries.values()) {
    if (!GUC_NAME.test(item.name) || Buffer.byteLength(item.name) > MAX_NAME_BYTES) {
      reader.report(item.keyNode, item.path, `expected a PostgreSQL setting name (letters, digits, "_", "$"; dotted for extension settings such as pg_stat_statements.track), got ${JSON.stringify(item.name)}`);
      ok = false;
      continue;
    }
    const name = item.name.toLowerCase();
    if (parameters.has(name)) {
      reader.report(item.keyNode, item.path, `${item.name} is already set in this mapping (setting names ignore case)`);
      ok = false;
      continue;
    }
    const value = readParameterValue(reader, item);
    if (value === undefined) {
      ok = false;
      continue;
    }
    parameters.set(name, { value, node: item.value });
  }
  return ok ? parameters : undefined;
}

/** A setting's value as PostgreSQL reads it: booleans as on/off, numbers as written, strings as they are. */
function readParameterValue(reader: YamlReader, entry: Entry): string | undefined {
  const node = reader.resolve(entry.value);
  const expected = `a string, number, boolean or duration such as "30s" or "5min"`;
  if (isScalar(node)) {
    if (typeof node.value === "boolean") return node.value ? "on" : "off";
    if (typeof node.value === "number") return node.source ?? String(node.value);
    if (typeof node.value === "string") {
      if (node.value.includes("\0")) {
        reader.report(entry.value, entry.path, "expected a value without NUL characters (they cannot be sent to PostgreSQL)");
        return undefined;
      }
      const minutes = MINUTES_AS_M.exec(node.value);
      if (minutes !== null) {
        reader.report(entry.value, entry.path, `PostgreSQL does not read "m" as minutes: write "${minutes[1]}min" (its units are us, ms, s, min, h, d)`);
        return undefined;
      }
      return node.value;
    }
  }
  reader.report(entry.value, entry.path, `expected ${expected}, got ${reader.describe(entry.value)}`);
  return undefined;
}

/**
 * The target's parameters: defaults' then the target's (the target's value wins name by name), then
 * default_transaction_read_only for `readOnly: true`. Undefined when there are none.
 */
export function mergeParameters(own: ParameterLayer | undefined, defaults: ParameterLayer | undefined, readOnly: boolean): Record<string, string> | undefined {
  const merged: Record<string, string> = {};
  for (const layer of [defaults, own]) {
    for (const [name, { value }] of layer ?? []) merged[name] = value;
  }
  if (readOnly) merged[READ_ONLY_PARAMETER] = "on";
  return Object.keys(merged).length === 0 ? undefined : merged;
}
