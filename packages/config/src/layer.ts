// A "layer" is what one place in the file says about target settings: `defaults`, or one
// target. Layers keep only what was written; resolve.ts stacks target over defaults.

import type { PathBase } from "./paths.js";
import { readParameters, type ParameterLayer } from "./parameters.js";
import { readAuth, readAws, readBastion, readDuration, readExecutable, readHostPort, readPath, readPool, readPort, type AwsLayer, type PoolLayer } from "./fields.js";
import type { AuthConfig, BastionConfig, TunnelDriver, TunnelMode } from "./types.js";
import type { Entry, MapView, ValueNode, YamlReader } from "./yaml-reader.js";

export const DRIVERS: readonly TunnelDriver[] = ["native", "plugin", "direct"];
export const MODES: readonly TunnelMode[] = ["eager", "lazy"];

/** Keys allowed both in `defaults` and in a target. */
export const SHARED_KEYS = ["aws", "user", "port", "auth", "tls", "clientTls", "tunnel", "bastion", "allowOtherUsers", "allowNonLoopback", "pool", "parameters", "readOnly"] as const;
/** Keys allowed only in a target. */
export const TARGET_ONLY_KEYS = ["host", "listen", "socket", "database"] as const;

const TUNNEL_KEYS_DEFAULTS = ["driver", "mode", "idleTimeout", "sessions", "pluginPath"] as const;
const TUNNEL_KEYS_TARGET = [...TUNNEL_KEYS_DEFAULTS, "address"] as const;

/** The tunnel settings one layer wrote. */
export interface TunnelLayer {
  driver?: TunnelDriver;
  address?: { host: string; port: number };
  mode?: TunnelMode;
  idleTimeoutMs?: number;
  sessions?: number;
  pluginPath?: string;
}

/** The shared settings one layer wrote, plus what later checks need to know about them. */
export interface Layer {
  /** AWS profile and region for these targets; key by key over the top-level `aws`. */
  aws: AwsLayer;
  user?: string;
  port?: number;
  auth?: AuthConfig;
  tlsCa?: string;
  clientTls?: boolean;
  allowOtherUsers?: boolean;
  allowNonLoopback?: boolean;
  parameters?: ParameterLayer;
  readOnly?: boolean;
  tunnel: TunnelLayer;
  bastion?: BastionConfig;
  /** `pool` as written: false, or the keys given. */
  pool?: PoolLayer | false;
  /** Keys given but invalid ("bastion", "tunnel.driver", ...): checks depending on them are skipped, to avoid knock-on errors. */
  broken: Set<string>;
  /** Nodes of keys that only apply to some drivers or modes, to point at when they do not apply. */
  nodes: { address?: ValueNode; idleTimeout?: ValueNode; pluginPath?: ValueNode; readOnly?: ValueNode };
}

/** Reads the shared keys of `view` (a target's mapping, or `defaults`). */
export function readLayer(reader: YamlReader, view: MapView, base: PathBase, where: "defaults" | "target"): Layer {
  const layer: Layer = { aws: {}, tunnel: {}, broken: new Set(), nodes: {} };
  // Reads one key if present; marks it broken when present but unusable.
  const read = <T>(name: string, parse: (entry: Entry) => T | undefined, brokenName = name): T | undefined => {
    const entry = view.entries.get(name);
    if (entry === undefined) return undefined;
    const value = parse(entry);
    if (value === undefined) layer.broken.add(brokenName);
    return value;
  };

  const aws = view.entries.get("aws");
  if (aws !== undefined) layer.aws = readAws(reader, aws);
  layer.user = read("user", (e) => reader.text(e, "a database user name"));
  layer.port = read("port", (e) => readPort(reader, e));
  layer.auth = read("auth", (e) => readAuth(reader, e, base));
  layer.clientTls = read("clientTls", (e) => reader.boolean(e));
  layer.allowOtherUsers = read("allowOtherUsers", (e) => reader.boolean(e));
  layer.allowNonLoopback = read("allowNonLoopback", (e) => reader.boolean(e));
  layer.bastion = read("bastion", (e) => readBastion(reader, e));
  layer.pool = read("pool", (e) => readPool(reader, e));
  layer.parameters = read("parameters", (e) => readParameters(reader, e));
  layer.readOnly = read("readOnly", (e) => reader.boolean(e));
  layer.nodes.readOnly = view.entries.get("readOnly")?.value;

  const tls = view.entries.get("tls");
  if (tls !== undefined) {
    const tlsView = reader.map(tls.value, tls.path, { known: ["ca"] }, `a mapping such as { ca: rds }`, tls.keyNode);
    const ca = tlsView?.entries.get("ca");
    if (ca !== undefined) {
      const raw = reader.text(ca, `"rds" or a path to a PEM file of CA certificates`);
      if (raw === "rds") layer.tlsCa = "rds";
      else if (raw !== undefined) layer.tlsCa = readPath(reader, ca, base, `"rds" or a path to a PEM file`);
    }
  }

  const tunnel = view.entries.get("tunnel");
  if (tunnel !== undefined) {
    const shape =
      where === "target"
        ? { known: TUNNEL_KEYS_TARGET }
        : { known: TUNNEL_KEYS_DEFAULTS, misplaced: { address: "not allowed in defaults: address is set per target (with driver: direct)" } };
    const tunnelView = reader.map(tunnel.value, tunnel.path, shape, "a mapping of tunnel settings", tunnel.keyNode);
    if (tunnelView !== undefined) readTunnel(reader, tunnelView, base, layer);
  }
  return layer;
}

function readTunnel(reader: YamlReader, view: MapView, base: PathBase, layer: Layer): void {
  const t = layer.tunnel;
  const get = (name: string) => view.entries.get(name);

  const driver = get("driver");
  if (driver !== undefined) {
    t.driver = reader.oneOf(driver, DRIVERS);
    if (t.driver === undefined) layer.broken.add("tunnel.driver");
  }
  const mode = get("mode");
  if (mode !== undefined) {
    t.mode = reader.oneOf(mode, MODES);
    if (t.mode === undefined) layer.broken.add("tunnel.mode");
  }
  const address = get("address");
  if (address !== undefined) {
    layer.nodes.address = address.value;
    t.address = readHostPort(reader, address);
  }
  const idle = get("idleTimeout");
  if (idle !== undefined) {
    layer.nodes.idleTimeout = idle.value;
    t.idleTimeoutMs = readDuration(reader, idle);
  }
  const sessions = get("sessions");
  if (sessions !== undefined) t.sessions = reader.integer(sessions, 1, 8, "a number of SSM sessions 1-8");
  const pluginPath = get("pluginPath");
  if (pluginPath !== undefined) {
    layer.nodes.pluginPath = pluginPath.value;
    t.pluginPath = readExecutable(reader, pluginPath, base);
  }
}
