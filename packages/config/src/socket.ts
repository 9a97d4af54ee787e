// `socket: true | PATH`: a Unix-socket listener named the way libpq looks for one (`<dir>/.s.PGSQL.<port>`).

import path from "node:path";
import { isScalar } from "yaml";
import { readPath } from "./fields.js";
import type { PathBase } from "./paths.js";
import type { SocketListener } from "./types.js";
import type { Entry, YamlReader } from "./yaml-reader.js";

/** Where `socket: true` puts its directories, and which OS's limit on socket paths applies. */
export interface SocketContext {
  /** The daemon's runtime directory; `socket: true` uses `<runtimeDir>/sockets/<target>`. */
  runtimeDir: string | undefined;
  platform: NodeJS.Platform;
}

/** The socket port when the target has no TCP listener: PostgreSQL's own default. */
export const DEFAULT_SOCKET_PORT = 5432;

/** sun_path holds 108 bytes on Linux and 104 on macOS and the BSDs, the terminating NUL included. */
export function maxSocketPathBytes(platform: NodeJS.Platform): number {
  return platform === "linux" ? 107 : 103;
}

/** libpq's file name for the socket of `port`. */
export function socketFileName(port: number): string {
  return `.s.PGSQL.${port}`;
}

/** What `socket` says before the port is known: off, rdsd's own directory, or the user's. */
export type SocketSetting = { kind: "off" } | { kind: "managed" } | { kind: "directory"; directory: string };

/** Reads `socket`: true, false, or a directory path ("~" and relative paths as everywhere in the file). */
export function readSocketSetting(reader: YamlReader, entry: Entry, base: PathBase): SocketSetting | undefined {
  const node = reader.resolve(entry.value);
  if (isScalar(node) && typeof node.value === "boolean") return node.value ? { kind: "managed" } : { kind: "off" };
  if (isScalar(node) && typeof node.value === "string" && node.value !== "") {
    const directory = readPath(reader, entry, base, "true, false, or a directory for the socket");
    return directory === undefined ? undefined : { kind: "directory", directory };
  }
  reader.report(entry.value, entry.path, `expected true (a private directory under rdsd's runtime directory), false, or a directory path, got ${reader.describe(entry.value)}`);
  return undefined;
}

/** The listener for a setting and port, or undefined (issue recorded) when its path is too long for the OS. */
export function resolveSocket(reader: YamlReader, entry: Entry, targetName: string, setting: SocketSetting, port: number, context: SocketContext): SocketListener | undefined {
  if (setting.kind === "off") return undefined;
  let directory: string;
  if (setting.kind === "managed") {
    if (context.runtimeDir === undefined) throw new TypeError("parseConfig: socket: true needs options.runtimeDir (the daemon's runtime directory)");
    directory = path.join(path.resolve(context.runtimeDir), "sockets", targetName);
  } else {
    directory = setting.directory;
  }
  const file = path.join(directory, socketFileName(port));
  const limit = maxSocketPathBytes(context.platform);
  const length = Buffer.byteLength(file);
  if (length > limit) {
    const fix =
      setting.kind === "managed"
        ? `set socket: to a shorter directory (e.g. socket: /tmp/rdsd-${targetName}), or point RDSD_RUNTIME_DIR at a shorter runtime directory`
        : `choose a shorter directory (e.g. socket: /tmp/rdsd-${targetName})`;
    reader.report(entry.value, entry.path, `the socket path ${file} is ${length} bytes, longer than the ${limit} bytes ${context.platform} allows for a Unix socket: ${fix}`);
    return undefined;
  }
  return { directory, port, path: file, managed: setting.kind === "managed" };
}
