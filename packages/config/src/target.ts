// One target: read its own keys, stack them over `defaults`, and check the combinations.

import { isScalar } from "yaml";
import { LOOPBACK_ONLY, parseListen, type ListenPolicy } from "./addresses.js";
import { regionFromRdsHostname } from "./aws-names.js";
import { readHost, type AwsLayer } from "./fields.js";
import { readLayer, SHARED_KEYS, TARGET_ONLY_KEYS, type Layer } from "./layer.js";
import { mergeParameters, READ_ONLY_PARAMETER } from "./parameters.js";
import type { PathBase } from "./paths.js";
import { DEFAULT_SOCKET_PORT, readSocketSetting, resolveSocket, type SocketContext } from "./socket.js";
import type { AwsSettings, ListenAddress, PoolConfig, TargetConfig, TunnelConfig } from "./types.js";
import type { Entry, ValueNode, YamlReader } from "./yaml-reader.js";

/** Target names appear in CLI commands and URLs. */
const TARGET_NAME = /^[a-z0-9][a-z0-9_-]*$/;

export const DEFAULT_PORT = 5432;
export const DEFAULT_IDLE_TIMEOUT_MS = 10 * 60_000;
export const DEFAULT_PLUGIN_PATH = "session-manager-plugin";
export const DEFAULT_POOL_IDLE = 4;
export const DEFAULT_POOL_IDLE_TIMEOUT_MS = 5 * 60_000;

/** What reading one target gave: its listen addresses even when other keys are at fault, for cross-target checks. */
export interface ReadTarget {
  name: string;
  /** The resolved target; undefined when something required is missing or invalid (issues recorded). */
  config?: TargetConfig;
  /** Valid listen addresses and the node they were read from. */
  listen?: { addresses: ListenAddress[]; node: ValueNode };
  /** The Unix socket's path and the node it was read from. */
  socket?: { path: string; node: ValueNode };
}

/** What a target inherits: the `defaults` layer and the top-level `aws` section. */
export interface Inherited {
  defaults: Layer;
  aws: AwsLayer;
}

/** Reads `targets.NAME`, recording issues; undefined when it is not even a mapping. */
export function readTarget(reader: YamlReader, entry: Entry, inherited: Inherited, base: PathBase, sockets: SocketContext): ReadTarget | undefined {
  const defaults = inherited.defaults;
  const nameOk = TARGET_NAME.test(entry.name);
  if (!nameOk) {
    reader.report(entry.keyNode, entry.path, `expected a target name of lowercase letters, digits, "-" and "_", starting with a letter or digit (it is used in CLI commands and URLs), got ${JSON.stringify(entry.name)}`);
  }
  const view = reader.map(entry.value, entry.path, { known: [...SHARED_KEYS, ...TARGET_ONLY_KEYS] }, "a mapping of target settings (host, listen, user, ...)", entry.keyNode);
  if (view === undefined) return undefined;
  const own = readLayer(reader, view, base, "target");

  const hostEntry = reader.required(view, "host", "the database endpoint, e.g. orders-dev.abc123xyz.eu-west-2.rds.amazonaws.com");
  const host = hostEntry === undefined ? undefined : readHost(reader, hostEntry);
  const socketEntry = view.entries.get("socket");
  const socketSetting = socketEntry === undefined ? { kind: "off" as const } : readSocketSetting(reader, socketEntry, base);
  // A socket alone is a listener: `listen` is required only without one (a broken socket value counts as one).
  const listenEntry = socketSetting?.kind === "off" ? reader.required(view, "listen", `a port 1-65535 or "ADDRESS:PORT" on loopback (or socket: true for a Unix socket only)`) : view.entries.get("listen");
  // Only an explicit `allowNonLoopback: true` (here or in defaults) lets a listener leave loopback.
  const allowNonLoopback = own.allowNonLoopback ?? defaults.allowNonLoopback ?? false;
  const allowOtherUsers = own.allowOtherUsers ?? defaults.allowOtherUsers ?? false;
  const listen = listenEntry === undefined ? (socketSetting?.kind === "off" ? undefined : []) : readListen(reader, listenEntry, allowNonLoopback ? { allowNonLoopback: true } : LOOPBACK_ONLY);
  // libpq names the socket after a port: the TCP one when there is one, else PostgreSQL's default.
  const socket =
    socketEntry === undefined || socketSetting === undefined || listen === undefined
      ? undefined
      : resolveSocket(reader, socketEntry, entry.name, socketSetting, listen[0]?.port ?? DEFAULT_SOCKET_PORT, sockets);
  const socketBroken = socketEntry !== undefined && socketSetting?.kind !== "off" && socket === undefined;
  const databaseEntry = view.entries.get("database");
  const database = databaseEntry === undefined ? undefined : reader.text(databaseEntry, "a database name");

  const user = own.user ?? defaults.user;
  if (user === undefined && !own.broken.has("user") && !defaults.broken.has("user")) {
    reader.report(entry.keyNode, `${entry.path}.user`, "missing: expected the database user to log in as (here or in defaults.user)");
  }

  const tunnel = mergeTunnel(own, defaults);
  checkTunnelFits(reader, entry.path, own, defaults, tunnel);
  const bastion = own.bastion ?? defaults.bastion;
  const bastionUnknowable = own.broken.has("bastion") || defaults.broken.has("bastion") || isBroken("tunnel.driver", own, defaults);
  if (bastion === undefined && tunnel.driver !== "direct" && !bastionUnknowable) {
    reader.report(
      entry.keyNode,
      `${entry.path}.bastion`,
      `missing: tunnel driver ${tunnel.driver} needs a bastion: set { instanceId: i-0123456789abcdef0 } or { tag: "Key=Value" } here or in defaults.bastion`,
    );
  }

  const aws = mergeAws([own.aws, defaults.aws, inherited.aws]);
  if (host !== undefined) checkRegionFitsHost(reader, entry.name, host, [own.aws, defaults.aws, inherited.aws]);
  const readOnly = own.readOnly ?? defaults.readOnly ?? false;
  const parameters = mergeParameters(own.parameters, defaults.parameters, false);
  const explicitReadOnly = parameters?.[READ_ONLY_PARAMETER];
  if (readOnly && explicitReadOnly !== undefined && !isTrueSetting(explicitReadOnly)) {
    reader.report(own.nodes.readOnly ?? defaults.nodes.readOnly ?? entry.keyNode, `${entry.path}.readOnly`, `readOnly: true contradicts parameters.${READ_ONLY_PARAMETER}: ${explicitReadOnly}: keep one of them`);
  }
  const effectiveReadOnly = readOnly || (explicitReadOnly !== undefined && isTrueSetting(explicitReadOnly));

  const read: ReadTarget = { name: entry.name };
  if (listen !== undefined && listenEntry !== undefined) read.listen = { addresses: listen, node: listenEntry.value };
  if (socket !== undefined && socketEntry !== undefined) read.socket = { path: socket.path, node: socketEntry.value };
  if (!nameOk || host === undefined || listen === undefined || socketBroken || user === undefined) return read;
  const config: TargetConfig = {
    name: entry.name,
    host,
    port: own.port ?? defaults.port ?? DEFAULT_PORT,
    listen,
    user,
    aws,
    auth: own.auth ?? defaults.auth ?? { kind: "iam" },
    tls: { ca: own.tlsCa ?? defaults.tlsCa ?? "rds" },
    clientTls: own.clientTls ?? defaults.clientTls ?? true,
    tunnel,
    pool: mergePool(own, defaults, tunnel),
  };
  if (database !== undefined) config.database = database;
  if (socket !== undefined) config.socket = socket;
  const sent = mergeParameters(own.parameters, defaults.parameters, effectiveReadOnly);
  if (sent !== undefined) config.parameters = sent;
  if (effectiveReadOnly) config.readOnly = true;
  if (allowOtherUsers) config.allowOtherUsers = true;
  if (allowNonLoopback) config.allowNonLoopback = true;
  if (bastion !== undefined) config.bastion = bastion;
  read.config = config;
  return read;
}

/** Most specific first: the first layer that sets a key wins, key by key. */
function mergeAws(layers: AwsLayer[]): AwsSettings {
  const aws: AwsSettings = {};
  const profile = layers.find((l) => l.profile !== undefined)?.profile;
  const region = layers.find((l) => l.region !== undefined)?.region;
  if (profile !== undefined) aws.profile = profile;
  if (region !== undefined) aws.region = region;
  return aws;
}

/**
 * An RDS endpoint's name carries its region, and its IAM token must be signed for that region: a configured
 * region that says otherwise is a mistake (usually a copied target), reported where that region was written.
 */
function checkRegionFitsHost(reader: YamlReader, target: string, host: string, layers: AwsLayer[]): void {
  const hostRegion = regionFromRdsHostname(host);
  const setBy = layers.find((l) => l.region !== undefined);
  if (hostRegion === undefined || setBy?.region === undefined || setBy.region === hostRegion || setBy.regionAt === undefined) return;
  reader.report(
    setBy.regionAt.node,
    setBy.regionAt.path,
    `target ${target}: region ${setBy.region} does not match its host ${host}, which is in ${hostRegion}: ` +
      `set aws: { region: ${hostRegion} } on target ${target} (or correct its host)`,
  );
}

/** PostgreSQL's spellings of true for a boolean setting (a unique prefix of on, true or yes, or 1). */
function isTrueSetting(value: string): boolean {
  const v = value.trim().toLowerCase();
  return v === "1" || v === "on" || (v.length > 0 && ("true".startsWith(v) || "yes".startsWith(v)));
}

function readListen(reader: YamlReader, entry: Entry, policy: ListenPolicy): ListenAddress[] | undefined {
  const node = reader.resolve(entry.value);
  if (isScalar(node) && (typeof node.value === "number" || typeof node.value === "string")) {
    const result = parseListen(node.value, policy);
    if ("addresses" in result) return result.addresses;
    reader.report(entry.value, entry.path, result.error);
    return undefined;
  }
  reader.report(entry.value, entry.path, `expected a port 1-65535 or "ADDRESS:PORT" on loopback, got ${reader.describe(entry.value)}`);
  return undefined;
}

/** Target values win over defaults key by key; then the built-in defaults. */
function mergeTunnel(own: Layer, defaults: Layer): TunnelConfig {
  const t = own.tunnel;
  const d = defaults.tunnel;
  const tunnel: TunnelConfig = {
    driver: t.driver ?? d.driver ?? "native",
    mode: t.mode ?? d.mode ?? "eager",
    idleTimeoutMs: t.idleTimeoutMs ?? d.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS,
    sessions: t.sessions ?? d.sessions ?? 1,
    pluginPath: t.pluginPath ?? d.pluginPath ?? DEFAULT_PLUGIN_PATH,
  };
  if (t.address !== undefined) tunnel.address = t.address;
  return tunnel;
}

/**
 * `pool: false` on the target turns reuse off whatever defaults say; a target's mapping is laid key by key
 * over defaults' (over the built-in values when defaults say false or nothing). Spares default to one
 * through an SSM tunnel, where each round trip of a cold login is expensive, and none for direct.
 */
function mergePool(own: Layer, defaults: Layer, tunnel: TunnelConfig): PoolConfig | false {
  if (own.pool === false || (own.pool === undefined && defaults.pool === false)) return false;
  const d = defaults.pool === false ? {} : (defaults.pool ?? {});
  const t = own.pool ?? {};
  return {
    idle: t.idle ?? d.idle ?? DEFAULT_POOL_IDLE,
    idleTimeoutMs: t.idleTimeoutMs ?? d.idleTimeoutMs ?? DEFAULT_POOL_IDLE_TIMEOUT_MS,
    spares: t.spares ?? d.spares ?? (tunnel.driver === "direct" ? 0 : 1),
  };
}

function isBroken(key: string, own: Layer, defaults: Layer): boolean {
  return own.broken.has(key) || defaults.broken.has(key);
}

/**
 * Settings written on the target itself that its driver or mode would ignore are refused: they
 * are almost always a mistake. The same settings in `defaults` just apply where they fit.
 */
function checkTunnelFits(reader: YamlReader, path: string, own: Layer, defaults: Layer, tunnel: TunnelConfig): void {
  const driverKnown = !isBroken("tunnel.driver", own, defaults);
  if (driverKnown && own.nodes.address !== undefined && tunnel.driver !== "direct") {
    reader.report(own.nodes.address, `${path}.tunnel.address`, `only applies with tunnel driver direct (this target's driver is ${tunnel.driver})`);
  }
  if (driverKnown && own.nodes.pluginPath !== undefined && tunnel.driver !== "plugin") {
    reader.report(own.nodes.pluginPath, `${path}.tunnel.pluginPath`, `only applies with tunnel driver plugin (this target's driver is ${tunnel.driver})`);
  }
  if (!isBroken("tunnel.mode", own, defaults) && own.nodes.idleTimeout !== undefined && tunnel.mode !== "lazy") {
    reader.report(own.nodes.idleTimeout, `${path}.tunnel.idleTimeout`, `only applies with tunnel mode lazy (this target's mode is ${tunnel.mode})`);
  }
}
