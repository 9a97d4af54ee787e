import { isIP } from "node:net";

/** Where the emulated agent dials: an address on this machine. */
export interface Destination {
  host: string;
  port: number;
}

/** One mapping: `HOST` or `HOST:PORT` to `ADDR:PORT` (or `ADDR`, keeping the requested port). */
export interface HostMapping {
  from: string;
  to: string;
}

/** Parses `HOST=ADDR:PORT` as given to --map. */
export function parseMapping(text: string): HostMapping {
  const eq = text.indexOf("=");
  if (eq <= 0 || eq === text.length - 1) throw new Error(`--map wants HOST=ADDR:PORT, got ${JSON.stringify(text)}`);
  const mapping = { from: text.slice(0, eq).trim().toLowerCase(), to: text.slice(eq + 1).trim() };
  parseTarget(mapping.to, 1); // validate now
  return mapping;
}

function parseTarget(text: string, defaultPort: number): Destination {
  const bracketed = /^\[([^\]]+)\](?::(\d+))?$/.exec(text);
  let host: string;
  let portText: string | undefined;
  if (bracketed) {
    host = bracketed[1]!;
    portText = bracketed[2];
  } else {
    const colon = text.lastIndexOf(":");
    if (colon > 0 && text.indexOf(":") === colon) {
      host = text.slice(0, colon);
      portText = text.slice(colon + 1);
    } else {
      host = text;
    }
  }
  const port = portText === undefined ? defaultPort : Number(portText);
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new Error(`bad port in ${JSON.stringify(text)}`);
  if (!isLoopback(host)) throw new Error(`the emulator only forwards to this machine; ${JSON.stringify(host)} is not a loopback address`);
  return { host, port };
}

export function isLoopback(host: string): boolean {
  if (host === "localhost") return true;
  if (isIP(host) === 4) return host.startsWith("127.");
  if (isIP(host) === 6) return host === "::1";
  return false;
}

/** The emulator's name resolution: RDS-shaped names map to local addresses; loopback literals pass through. */
export class DestinationMap {
  private readonly entries = new Map<string, string>();

  constructor(mappings: Iterable<HostMapping> = []) {
    for (const m of mappings) this.set(m);
  }

  set(mapping: HostMapping): void {
    parseTarget(mapping.to, 1);
    this.entries.set(mapping.from.toLowerCase(), mapping.to);
  }

  list(): HostMapping[] {
    return [...this.entries].map(([from, to]) => ({ from, to }));
  }

  /** The local address for host:port, or undefined when the name does not resolve (the agent then reports ConnectToPortError). */
  resolve(host: string, port: number): Destination | undefined {
    const key = host.toLowerCase();
    const target = this.entries.get(`${key}:${port}`) ?? this.entries.get(key);
    if (target !== undefined) return parseTarget(target, port);
    return isLoopback(host) ? { host, port } : undefined;
  }
}
