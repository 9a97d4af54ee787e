import net from "node:net";
import type { Duplex } from "node:stream";
import { SqlState } from "@rdsd/pg-wire";
import { ProxyError } from "./errors.js";

/**
 * The seam between the proxy and whatever carries bytes to the database: a direct TCP connection,
 * a stream inside an SSM session, or the official plugin's local port. A dialer hands back a
 * connected byte stream to the database's host:port; the proxy then runs TLS and the Postgres login over it.
 */
export interface Dialer {
  /**
   * Resolves once the stream is connected. Rejects with a ProxyError whose fix says what to do. `use` "spare":
   * the stream will wait unused (a warm spare), so a tunnel places it as it places idle streams, and does not
   * count it as a client when it places the next client's stream. Default "client".
   */
  dial(signal: AbortSignal, use?: "client" | "spare"): Promise<Duplex>;
  /** Where this dialer goes, for logs and errors ("127.0.0.1:5432", "SSM via i-0abc"). */
  describe(): string;
  /** What a client is told dropped when its stream ends mid-session ("the SSM tunnel"). Default: "the connection". */
  readonly carrier?: string;
  /**
   * Tells the dialer a stream it gave carries no client now (parked for reuse), or carries one again: a
   * lazy tunnel closes when no stream carries a client, whatever is parked.
   */
  markIdle?(stream: Duplex, idle: boolean): void;
  /**
   * Whether a stream it gave, idle since (parked with a logged-in server connection, or a warm spare), may
   * carry a new client; a promise when the answer waits for a check of what carries it (a tunnel after the
   * machine slept). Undefined: always, until the stream closes (a closed one is never handed out).
   */
  usable?(stream: Duplex): boolean | Promise<boolean>;
  /**
   * True when each stream costs a session of its own (an SSM agent too old to multiplex): a warm spare would
   * start and spend one, so none is kept. Undefined or false: streams are cheap.
   */
  singleUse?(): boolean;
}

/** Connects straight to an address: the `direct` tunnel driver (VPN, Direct Connect, tests). */
export class DirectDialer implements Dialer {
  constructor(
    private readonly host: string,
    private readonly port: number,
  ) {}

  describe(): string {
    return net.isIPv6(this.host) ? `[${this.host}]:${this.port}` : `${this.host}:${this.port}`;
  }

  dial(signal: AbortSignal): Promise<Duplex> {
    return new Promise((resolve, reject) => {
      const socket = net.connect({ host: this.host, port: this.port, noDelay: true, keepAlive: true, keepAliveInitialDelay: 30_000 });
      const onAbort = () => {
        socket.destroy();
        reject(new ProxyError(`timed out connecting to ${this.describe()}`, "check that the database (or tunnel.address) is reachable from this machine", SqlState.unableToConnect));
      };
      if (signal.aborted) return onAbort();
      signal.addEventListener("abort", onAbort, { once: true });
      socket.once("connect", () => {
        signal.removeEventListener("abort", onAbort);
        socket.removeAllListeners("error");
        resolve(socket);
      });
      socket.once("error", (err: NodeJS.ErrnoException) => {
        signal.removeEventListener("abort", onAbort);
        reject(dialFailure(this.describe(), err));
      });
    });
  }
}

function dialFailure(where: string, err: NodeJS.ErrnoException): ProxyError {
  switch (err.code) {
    case "ECONNREFUSED":
      return new ProxyError(`connection to ${where} refused`, `check that the database is running and listening on ${where}`);
    case "ENOTFOUND":
    case "EAI_AGAIN":
      return new ProxyError(`cannot resolve ${where}`, "check the target's host (or tunnel.address) and this machine's DNS; for private RDS endpoints use an SSM tunnel driver");
    case "ETIMEDOUT":
    case "EHOSTUNREACH":
    case "ENETUNREACH":
      return new ProxyError(`cannot reach ${where} (${err.code})`, "check the network path (VPN, security groups) to the database");
    default:
      return new ProxyError(`cannot connect to ${where}: ${err.message}`, "check that the database is reachable from this machine");
  }
}
