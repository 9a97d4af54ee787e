import os from "node:os";
import path from "node:path";
import { LineCounter, parseDocument } from "yaml";
import { readAws, type AwsLayer } from "./fields.js";
import { ConfigError, type ConfigIssue } from "./issues.js";
import { readLayer, SHARED_KEYS, TARGET_ONLY_KEYS, type Layer } from "./layer.js";
import type { SocketContext } from "./socket.js";
import { readTarget, type ReadTarget } from "./target.js";
import type { AwsSettings, ListenAddress, RdsdConfig } from "./types.js";
import { YamlReader } from "./yaml-reader.js";

export interface ParseOptions {
  /** Where "~" points; defaults to the current user's home directory. */
  home?: string;
  /** The daemon's runtime directory, where `socket: true` puts a target's socket; needed only for that. */
  runtimeDir?: string;
  /** Whose limit on Unix-socket path length applies; defaults to this process's platform. */
  platform?: NodeJS.Platform;
}

const ROOT_KEYS = ["aws", "notifications", "defaults", "targets"] as const;

/**
 * Parses and validates one config file's text. `file` names it in messages and anchors its
 * relative paths. Throws ConfigError listing every problem found; secrets are not read.
 */
export function parseConfig(text: string, file: string, options: ParseOptions = {}): RdsdConfig {
  const absoluteFile = path.resolve(file);
  const base = { home: options.home ?? os.homedir(), configDir: path.dirname(absoluteFile) };
  const lines = new LineCounter();
  // uniqueKeys off: duplicate keys are reported by YamlReader, with their key path.
  const document = parseDocument(text, { lineCounter: lines, uniqueKeys: false, prettyErrors: false });
  if (document.errors.length > 0) {
    throw new ConfigError(
      absoluteFile,
      document.errors.map((error) => {
        const { line, col } = lines.linePos(error.pos[0]);
        return { line, column: col, key: "", message: `YAML syntax error: ${error.message}` };
      }),
    );
  }

  const reader = new YamlReader(document, lines);
  const sockets = { runtimeDir: options.runtimeDir, platform: options.platform ?? process.platform };
  const config = readRoot(reader, document.contents, absoluteFile, base, sockets);
  if (reader.issues.length > 0 || config === undefined) {
    throw new ConfigError(absoluteFile, sortByPosition(reader.issues));
  }
  return config;
}

function readRoot(reader: YamlReader, root: Parameters<YamlReader["map"]>[0], file: string, base: { home: string; configDir: string }, sockets: SocketContext): RdsdConfig | undefined {
  if (root === null || reader.resolve(root) === null) {
    reader.report(null, "", "the file is empty: expected a mapping with a targets section (see config/example.yaml)");
    return undefined;
  }
  const view = reader.map(root, "", { known: ROOT_KEYS }, "a mapping with aws, defaults and targets");
  if (view === undefined) return undefined;

  const awsEntry = view.entries.get("aws");
  const awsLayer: AwsLayer = awsEntry === undefined ? {} : readAws(reader, awsEntry);
  const aws: AwsSettings = settingsOf(awsLayer);

  const notificationsEntry = view.entries.get("notifications");
  const notifications = { desktop: true };
  if (notificationsEntry !== undefined) {
    const notificationsView = reader.map(notificationsEntry.value, notificationsEntry.path, { known: ["desktop"] }, "a mapping such as { desktop: false }", notificationsEntry.keyNode);
    const desktop = notificationsView?.entries.get("desktop");
    const value = desktop === undefined ? undefined : reader.boolean(desktop);
    if (value !== undefined) notifications.desktop = value;
  }

  const defaultsEntry = view.entries.get("defaults");
  let defaults: Layer = { aws: {}, tunnel: {}, broken: new Set(), nodes: {} };
  if (defaultsEntry !== undefined) {
    const perTarget = Object.fromEntries(TARGET_ONLY_KEYS.map((key) => [key, `not allowed in defaults: ${key} is set per target`]));
    const defaultsView = reader.map(defaultsEntry.value, defaultsEntry.path, { known: SHARED_KEYS, misplaced: perTarget }, "a mapping of settings shared by all targets", defaultsEntry.keyNode);
    if (defaultsView !== undefined) defaults = readLayer(reader, defaultsView, base, "defaults");
  }

  const targetsEntry = reader.required(view, "targets", "a mapping of target names to their settings");
  if (targetsEntry === undefined) return undefined;
  const targetsView = reader.map(targetsEntry.value, targetsEntry.path, { known: "any" }, "a mapping of target names to their settings", targetsEntry.keyNode);
  if (targetsView === undefined) return undefined;

  const targets: ReadTarget[] = [];
  for (const entry of targetsView.entries.values()) {
    const target = readTarget(reader, entry, { defaults, aws: awsLayer }, base, sockets);
    if (target !== undefined) targets.push(target);
  }
  checkListenConflicts(reader, targets);
  checkSocketConflicts(reader, targets);
  const configs = targets.flatMap((target) => (target.config === undefined ? [] : [target.config]));
  return configs.length === targets.length ? { file, aws, notifications, targets: configs } : undefined;
}

function settingsOf(layer: AwsLayer): AwsSettings {
  const settings: AwsSettings = {};
  if (layer.profile !== undefined) settings.profile = layer.profile;
  if (layer.region !== undefined) settings.region = layer.region;
  return settings;
}

/** Two targets may not listen on the same address and port (6432 covers 127.0.0.1:6432 and [::1]:6432). */
function checkListenConflicts(reader: YamlReader, targets: readonly ReadTarget[]): void {
  const owners = new Map<string, ReadTarget>();
  for (const target of targets) {
    if (target.listen === undefined) continue;
    const clashes = new Set<ReadTarget>();
    for (const address of target.listen.addresses) {
      const key = showAddress(address);
      const owner = owners.get(key);
      if (owner === undefined) {
        owners.set(key, target);
      } else if (!clashes.has(owner)) {
        clashes.add(owner);
        const line = reader.lineOf(owner.listen?.node ?? null);
        reader.report(
          target.listen.node,
          `targets.${target.name}.listen`,
          `${key} is already the listen address of target ${owner.name}${line === undefined ? "" : ` (line ${line})`}: each target needs its own port`,
        );
      }
    }
  }
}

/** Two targets may not name the same socket file (`socket: PATH` with the same directory and port). */
function checkSocketConflicts(reader: YamlReader, targets: readonly ReadTarget[]): void {
  const owners = new Map<string, ReadTarget>();
  for (const target of targets) {
    if (target.socket === undefined) continue;
    const owner = owners.get(target.socket.path);
    if (owner === undefined) {
      owners.set(target.socket.path, target);
      continue;
    }
    const line = reader.lineOf(owner.socket?.node ?? null);
    reader.report(target.socket.node, `targets.${target.name}.socket`, `${target.socket.path} is already the socket of target ${owner.name}${line === undefined ? "" : ` (line ${line})`}: give each target its own directory or port`);
  }
}

function showAddress(address: ListenAddress): string {
  return address.host.includes(":") ? `[${address.host}]:${address.port}` : `${address.host}:${address.port}`;
}

function sortByPosition(issues: readonly ConfigIssue[]): ConfigIssue[] {
  const rank = (issue: ConfigIssue) => (issue.line ?? Number.MAX_SAFE_INTEGER) * 100_000 + (issue.column ?? 0);
  // Array.prototype.sort is stable: issues at one position keep the order they were found in.
  return [...issues].sort((a, b) => rank(a) - rank(b));
}
