// Readers for one key each. They record issues through the YamlReader and return undefined
// when the value cannot be used.

import { isMap, isScalar } from "yaml";
import { isHostname, splitHostPort } from "./addresses.js";
import { parseDuration } from "./duration.js";
import { resolveConfigRelativePath, type PathBase } from "./paths.js";
import { isValidRegionName } from "./aws-names.js";
import type { AuthConfig, AwsSettings, BastionConfig, PasswordSource } from "./types.js";
import type { Entry, ValueNode, YamlReader } from "./yaml-reader.js";

/** What one `aws` section says, and where its region was written (to point at when it is wrong for a host). */
export interface AwsLayer extends AwsSettings {
  regionAt?: { node: ValueNode; path: string };
}

/** A file path value: "~" expanded, relative paths anchored at the config file's directory. */
export function readPath(reader: YamlReader, entry: Entry, base: PathBase, expected: string): string | undefined {
  const raw = reader.text(entry, expected);
  if (raw === undefined) return undefined;
  const resolved = resolveConfigRelativePath(raw, base);
  if ("error" in resolved) {
    reader.report(entry.value, entry.path, resolved.error);
    return undefined;
  }
  return resolved.path;
}

/** A DNS name or IP literal. */
export function readHost(reader: YamlReader, entry: Entry): string | undefined {
  const host = reader.text(entry, "a hostname such as orders-dev.abc123xyz.eu-west-2.rds.amazonaws.com");
  if (host === undefined) return undefined;
  if (!isHostname(host)) {
    reader.report(entry.value, entry.path, `expected a hostname such as orders-dev.abc123xyz.eu-west-2.rds.amazonaws.com, got ${JSON.stringify(host)}`);
    return undefined;
  }
  return host;
}

export function readPort(reader: YamlReader, entry: Entry): number | undefined {
  return reader.integer(entry, 1, 65535, "a port 1-65535");
}

/** The `aws` section (top level, `defaults` or a target): profile and region, both optional. */
export function readAws(reader: YamlReader, entry: Entry): AwsLayer {
  const view = reader.map(entry.value, entry.path, { known: ["profile", "region"] }, "a mapping with profile and/or region", entry.keyNode);
  const aws: AwsLayer = {};
  if (view === undefined) return aws;
  const profile = view.entries.get("profile");
  if (profile !== undefined) {
    const value = reader.text(profile, "an AWS profile name");
    if (value !== undefined) aws.profile = value;
  }
  const region = view.entries.get("region");
  if (region !== undefined) {
    const value = reader.text(region, "an AWS region such as eu-west-2");
    if (value !== undefined && !isValidRegionName(value)) {
      reader.report(region.value, region.path, `expected an AWS region such as eu-west-2, got ${JSON.stringify(value)}`);
    } else if (value !== undefined) {
      aws.region = value;
      aws.regionAt = { node: region.value, path: region.path };
    }
  }
  return aws;
}

const AUTH_EXPECTED = `iam, { password: { env: VAR } } or { password: { file: PATH } }`;
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/**
 * `auth`: iam | { password: { env } } | { password: { file } }. Values under auth are never
 * echoed in messages: a user who pasted a password here must not see it in logs.
 */
export function readAuth(reader: YamlReader, entry: Entry, base: PathBase): AuthConfig | undefined {
  const node = reader.resolve(entry.value);
  if (isScalar(node)) {
    if (node.value === "iam") return { kind: "iam" };
    reader.report(entry.value, entry.path, `expected ${AUTH_EXPECTED}`);
    return undefined;
  }
  if (!isMap(node)) {
    reader.report(entry.value, entry.path, `expected ${AUTH_EXPECTED}`);
    return undefined;
  }
  const view = reader.map(entry.value, entry.path, { known: ["password"], misplaced: { iam: `expected ${AUTH_EXPECTED} (write auth: iam)` } }, AUTH_EXPECTED, entry.keyNode);
  if (view === undefined) return undefined;
  const password = reader.required(view, "password", "{ env: VAR } or { file: PATH }");
  if (password === undefined) return undefined;
  const source = readPasswordSource(reader, password, base);
  return source === undefined ? undefined : { kind: "password", source };
}

function readPasswordSource(reader: YamlReader, entry: Entry, base: PathBase): PasswordSource | undefined {
  const expected = "{ env: VAR } or { file: PATH } (the password itself does not go in the config file)";
  if (!isMap(reader.resolve(entry.value))) {
    reader.report(entry.value, entry.path, `expected ${expected}`);
    return undefined;
  }
  const view = reader.map(entry.value, entry.path, { known: ["env", "file"] }, expected, entry.keyNode);
  if (view === undefined) return undefined;
  const env = view.entries.get("env");
  const file = view.entries.get("file");
  if ((env === undefined) === (file === undefined)) {
    reader.report(entry.value, entry.path, `expected exactly one of env or file`);
    return undefined;
  }
  if (env !== undefined) {
    const name = reader.text(env, "an environment variable name", { secret: true });
    if (name === undefined) return undefined;
    if (!ENV_NAME.test(name)) {
      reader.report(env.value, env.path, "expected an environment variable name (letters, digits, _; not starting with a digit)");
      return undefined;
    }
    return { env: name };
  }
  if (file === undefined) return undefined;
  const path = readPath(reader, file, base, "a path to a file holding the password");
  return path === undefined ? undefined : { file: path };
}

const INSTANCE_ID = /^m?i-[0-9a-f]{8,17}$/;

/** `bastion`: { instanceId: i-... } or { tag: "Key=Value" }, exactly one. */
export function readBastion(reader: YamlReader, entry: Entry): BastionConfig | undefined {
  const expected = `{ instanceId: i-0123456789abcdef0 } or { tag: "Key=Value" }`;
  const view = reader.map(entry.value, entry.path, { known: ["instanceId", "tag"] }, expected, entry.keyNode);
  if (view === undefined) return undefined;
  const instanceId = view.entries.get("instanceId");
  const tag = view.entries.get("tag");
  if ((instanceId === undefined) === (tag === undefined)) {
    reader.report(entry.value, entry.path, `expected exactly one of instanceId or tag`);
    return undefined;
  }
  if (instanceId !== undefined) {
    const id = reader.text(instanceId, "an EC2 instance id such as i-0123456789abcdef0");
    if (id === undefined) return undefined;
    if (!INSTANCE_ID.test(id)) {
      reader.report(instanceId.value, instanceId.path, `expected an EC2 instance id such as i-0123456789abcdef0, got ${JSON.stringify(id)}`);
      return undefined;
    }
    return { instanceId: id };
  }
  if (tag === undefined) return undefined;
  const text = reader.text(tag, `"Key=Value", e.g. "Name=db-bastion"`);
  if (text === undefined) return undefined;
  const equals = text.indexOf("=");
  if (equals <= 0) {
    reader.report(tag.value, tag.path, `expected "Key=Value", e.g. "Name=db-bastion", got ${JSON.stringify(text)}`);
    return undefined;
  }
  return { tag: { key: text.slice(0, equals), value: text.slice(equals + 1) } };
}

/** `tunnel.address`: "HOST:PORT" or "[V6]:PORT". */
export function readHostPort(reader: YamlReader, entry: Entry): { host: string; port: number } | undefined {
  const expected = `"HOST:PORT", e.g. "127.0.0.1:5432"`;
  const text = reader.text(entry, expected);
  if (text === undefined) return undefined;
  const parsed = splitHostPort(text);
  if (parsed === undefined || !isHostname(parsed.host)) {
    reader.report(entry.value, entry.path, `expected ${expected}, got ${JSON.stringify(text)}`);
    return undefined;
  }
  return parsed;
}

/** A positive duration: "500ms", "30s", "10m", "1h" or a number of seconds; in milliseconds. */
export function readDuration(reader: YamlReader, entry: Entry): number | undefined {
  const node = reader.resolve(entry.value);
  const expected = `a duration such as "30s", "10m", "1h" or a number of seconds`;
  if (isScalar(node) && (typeof node.value === "string" || typeof node.value === "number")) {
    try {
      const ms = parseDuration(typeof node.value === "number" ? String(node.value) : node.value);
      if (ms > 0) return ms;
    } catch {
      // reported below with the key path
    }
  }
  reader.report(entry.value, entry.path, `expected ${expected} (more than zero), got ${reader.describe(entry.value)}`);
  return undefined;
}

/** The `pool` keys one layer wrote. */
export interface PoolLayer {
  idle?: number;
  idleTimeoutMs?: number;
  spares?: number;
}

const POOL_EXPECTED = "false, or a mapping such as { idle: 4, idleTimeout: 5m, spares: 1 }";

/** `pool`: false (reuse and spares off), true (the defaults), or { idle, idleTimeout, spares }. */
export function readPool(reader: YamlReader, entry: Entry): PoolLayer | false | undefined {
  const node = reader.resolve(entry.value);
  if (isScalar(node)) {
    if (node.value === false) return false;
    if (node.value === true) return {};
    reader.report(entry.value, entry.path, `expected ${POOL_EXPECTED}, got ${reader.describe(entry.value)}`);
    return undefined;
  }
  const view = reader.map(entry.value, entry.path, { known: ["idle", "idleTimeout", "spares"] }, POOL_EXPECTED, entry.keyNode);
  if (view === undefined) return undefined;
  const pool: PoolLayer = {};
  let ok = true;
  const idle = view.entries.get("idle");
  if (idle !== undefined) {
    const value = reader.integer(idle, 0, 100, "a number of parked connections 0-100");
    if (value === undefined) ok = false;
    else pool.idle = value;
  }
  const idleTimeout = view.entries.get("idleTimeout");
  if (idleTimeout !== undefined) {
    const value = readDuration(reader, idleTimeout);
    if (value === undefined) ok = false;
    else pool.idleTimeoutMs = value;
  }
  const spares = view.entries.get("spares");
  if (spares !== undefined) {
    const value = reader.integer(spares, 0, 8, "a number of spare connections 0-8");
    if (value === undefined) ok = false;
    else pool.spares = value;
  }
  return ok ? pool : undefined;
}

/** `pluginPath`: a bare command name is looked up in $PATH at run time; anything else is a path. */
export function readExecutable(reader: YamlReader, entry: Entry, base: PathBase): string | undefined {
  const expected = "an executable name (looked up in PATH) or a path";
  const raw = reader.text(entry, expected);
  if (raw === undefined) return undefined;
  if (!raw.includes("/") && !raw.startsWith("~")) return raw;
  return readPath(reader, entry, base, expected);
}
