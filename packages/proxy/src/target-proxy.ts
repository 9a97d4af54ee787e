import { EventEmitter } from "node:events";
import net from "node:net";
import type { Duplex } from "node:stream";
import tls from "node:tls";
import {
  appendOptions,
  BackendMessages,
  buildStartupMessage,
  CANCEL_REQUEST_CODE,
  FrontendMessages,
  settingOptions,
  SqlState,
  startupParameter,
  textParameter,
  type CancelRequest,
  type StartupMessage,
  type StartupParameter,
} from "@rdsd/pg-wire";
import { CancelRegistry } from "./cancel-registry.js";
import { localGreeting, newClientKey, withClientKey } from "./client-greeting.js";
import { readClientHello } from "./client-startup.js";
import type { Dialer } from "./dialer.js";
import { ErrorHintInjector } from "./error-hint.js";
import { asProxyError, ProxyError } from "./errors.js";
import { silentLogger, type ProxyLogger } from "./logger.js";
import { InvalidPacketError, StreamClosedError } from "./packet-reader.js";
import { IdlePool, type ParkedConnection } from "./idle-pool.js";
import { SparePool, type SpareConnection } from "./spare-pool.js";
import type { Taken } from "./taken.js";
import { relay, type SessionWatch } from "./relay.js";
import { resetSession } from "./session-reset.js";
import { peerCredentialsAvailable, socketOwner, unixPeerCredentials, type SocketOwner } from "./socket-owner.js";
import { listenUnix, removeSocketDirectory, type UnixSocketOptions } from "./unix-listener.js";
import { EarlyPasswordUnwanted, loginUpstream, secureUpstream, type UpstreamTarget } from "./upstream-login.js";
import { CleartextMemory } from "./cleartext-memory.js";

export interface ListenAddress {
  host: string;
  /** 0 picks a free port (tests); `addresses()` tells which. */
  port: number;
}

/** Everything one target's proxy needs. The daemon builds it from the config. */
export interface TargetProxyOptions {
  /** The target's name, for logs and status. */
  name: string;
  /** Loopback addresses to listen on. */
  listen: ListenAddress[];
  /** The database: RDS hostname (TLS verifies against it), port, user, CA and login method. */
  upstream: UpstreamTarget;
  /** The database clients get when they name none (libpq's default of their own user name counts as none). */
  defaultDatabase?: string | undefined;
  /** Carries bytes to upstream.host:port. Replaceable at run time (tunnel restarts). */
  dialer: Dialer;
  /** Certificate for local TLS (SSLRequest answered S, direct TLS); null answers N. */
  clientTls: { certPem: string; keyPem: string } | null;
  /**
   * Accept connections opened by other local users (Linux: the client socket's owner, from /proc/net/tcp{,6}).
   * Default false: only the user running rdsd may use its database login. Elsewhere the check is skipped.
   */
  allowOtherUsers?: boolean;
  /**
   * Also listen on this Unix socket (libpq's `<dir>/.s.PGSQL.<port>`). Other uids are refused from its peer
   * credentials, as on TCP; its directory and mode keep them out first.
   */
  socket?: UnixSocketOptions;
  /** Session settings sent upstream as `-c NAME=VALUE` after the client's own startup `options`. */
  parameters?: Readonly<Record<string, string>>;
  /**
   * The target is read-only in rdsd's config: the server's "read-only transaction" errors (SQLSTATE 25006)
   * reach the client with a hint saying so. Setting default_transaction_read_only is `parameters`' job.
   */
  readOnly?: boolean;
  /** A client must finish its startup packets within this time. Default 10 s. */
  startupTimeoutMs?: number;
  /** Dialing, upstream TLS and login must finish within this time (it includes waiting for a tunnel). Default 30 s. */
  loginTimeoutMs?: number;
  /**
   * Reuse of logged-in server connections: a client that ends cleanly leaves its connection reset (DISCARD ALL)
   * and parked, at most `idle` of them for `idleTimeoutMs` each; a later client with the same startup parameters
   * gets one with no round trip upstream. Absent or false: every client logs in afresh.
   */
  pool?: PoolOptions | false;
  logger?: ProxyLogger;
}

/** Reuse of logged-in server connections and warm spares (config `pool`). */
export interface PoolOptions {
  /** Parked connections at most. */
  idle: number;
  /** A parked connection unused this long is closed; spares are kept this long after the last client left. */
  idleTimeoutMs: number;
  /**
   * Connections kept with TLS done and nothing sent, for the next cold login, while the target is in use: from a
   * client's arrival until idleTimeoutMs after the last client left. None before the first client. Default 0.
   */
  spares?: number;
  /** A spare older than this is replaced. Default 45 s (PostgreSQL's authentication_timeout is 60 s by default). */
  spareRefreshMs?: number;
}

/** Counters for `rdsd status`. */
export interface TargetProxyStats {
  /** Client connections open now, including those still logging in. */
  connections: number;
  /** Client connections accepted since start. */
  accepted: number;
  /** Logins that failed since start. */
  failedLogins: number;
  bytesFromClients: number;
  bytesToClients: number;
  /** Logged-in server connections parked for reuse now. */
  parked: number;
  /** Server connections kept ready (TLS done, nothing sent) for the next cold login. */
  spares: number;
  /** The most recent failure shown to a client, without secrets. */
  lastError: { message: string; fix: string; at: Date } | null;
}

const DEFAULT_STARTUP_TIMEOUT_MS = 10_000;
const DEFAULT_LOGIN_TIMEOUT_MS = 30_000;
const CANCEL_TIMEOUT_MS = 10_000;
/** A reset (DISCARD ALL) answers in milliseconds; one that does not is a connection not to reuse. */
const RESET_TIMEOUT_MS = 10_000;
const DEFAULT_SPARE_REFRESH_MS = 45_000;

/**
 * One target's local PostgreSQL endpoint: owns its listeners and its client connections (a "socket mount").
 * Each client goes through the startup phase, an upstream login with verify-full TLS, then a raw relay.
 */
export class TargetProxy extends EventEmitter {
  private readonly servers: net.Server[] = [];
  private unixServer: net.Server | undefined;
  private peerCheckNoticeGiven = false;
  private readonly clients = new Set<net.Socket>();
  private readonly cancels = new CancelRegistry();
  private readonly clientTls: tls.SecureContext | null;
  private readonly logger: ProxyLogger;
  private dialer: Dialer;
  private upstream: UpstreamTarget;
  /** Which identities' logins the server asks for a cleartext password (sent early); per route, so new on reroute. */
  private cleartextMemory = new CleartextMemory();
  private closedBytesIn = 0;
  private closedBytesOut = 0;
  private accepted = 0;
  private failedLogins = 0;
  private lastError: TargetProxyStats["lastError"] = null;
  private nextConnectionId = 1;
  private stopping = false;
  /** Set once start() has bound the listeners: spares are wanted only from then on. */
  private listening = false;
  private readonly pool: IdlePool | undefined;
  private readonly spares: SparePool | undefined;
  /** Clients past their startup and still connected: while there is one, the target is in use. */
  private clientsInUse = 0;
  /** Ends the use window once no client has been connected for pool.idleTimeoutMs. */
  private unusedTimer: NodeJS.Timeout | undefined;
  /** Server connections between a client's clean end and their parking (being reset). */
  private readonly resetting = new Set<Duplex>();
  /** Per pool key, the resets in flight and who waits for one to finish (a client right behind the last one's Terminate). */
  private readonly recycling = new Map<string, { count: number; waiters: Array<() => void> }>();
  /** Bumped when parked connections must go (reroute, stop): a reset that finishes after it does not park. */
  private poolGeneration = 0;

  constructor(private readonly options: TargetProxyOptions) {
    super();
    this.dialer = options.dialer;
    this.upstream = options.upstream;
    this.logger = options.logger ?? silentLogger;
    const pool = options.pool || undefined;
    this.pool = pool ? new IdlePool({ maxIdle: pool.idle, idleTimeoutMs: pool.idleTimeoutMs }) : undefined;
    this.spares =
      pool && (pool.spares ?? 0) > 0
        ? new SparePool({
            count: pool.spares!,
            refreshMs: pool.spareRefreshMs ?? DEFAULT_SPARE_REFRESH_MS,
            open: () => this.connectUpstream(this.dialer, this.upstream, AbortSignal.timeout(this.options.loginTimeoutMs ?? DEFAULT_LOGIN_TIMEOUT_MS), "spare"),
            // Never over a single-use tunnel (an old SSM agent): each spare would spend a session of its own.
            wanted: () => this.listening && !this.stopping && this.inUse && this.dialer.singleUse?.() !== true,
            onEvent: (event, detail) => this.logger.debug(`spare connection ${event}`, { target: this.name, ...(detail ? { error: detail } : {}) }),
          })
        : undefined;
    this.clientTls = options.clientTls
      ? tls.createSecureContext({ cert: options.clientTls.certPem, key: options.clientTls.keyPem, minVersion: "TLSv1.2" })
      : null;
  }

  get name(): string {
    return this.options.name;
  }

  /** Binds every listen address and the Unix socket. Fails (and binds nothing) if one is taken. */
  async start(): Promise<void> {
    try {
      for (const address of this.options.listen) {
        const server = await this.bind(address);
        if (server) this.servers.push(server);
      }
      if (this.options.socket) {
        const server = net.createServer((socket) => this.accept(socket, "unix"));
        await listenUnix(server, this.options.socket, this.options.allowOtherUsers === true, this.name);
        server.on("error", (err) => this.logger.error("listener error", { target: this.name, error: err.message }));
        this.unixServer = server;
      }
    } catch (err) {
      await this.closeServers();
      throw err;
    }
    if (this.servers.length === 0 && !this.unixServer) throw new Error(`target ${this.name}: no listen address could be bound`);
    // No spare yet: an unused target dials nothing (the first client's arrival starts them).
    this.listening = true;
  }

  /** The TCP addresses actually listened on. */
  addresses(): ListenAddress[] {
    return this.servers.map((s) => {
      const a = s.address() as net.AddressInfo;
      return { host: a.address, port: a.port };
    });
  }

  /** The Unix socket listened on, if any. */
  socketPath(): string | undefined {
    return this.unixServer ? this.options.socket?.path : undefined;
  }

  /**
   * Swaps the way to the database and the upstream settings (a restart after the CA or the region was
   * fixed); connections already relaying keep theirs.
   */
  reroute(dialer: Dialer, upstream: UpstreamTarget): void {
    this.dialer = dialer;
    this.upstream = upstream;
    this.cleartextMemory = new CleartextMemory();
    this.closeIdle();
  }

  /** Closes the parked server connections (and those being reset for parking): a restart must not keep them. */
  closeIdle(): void {
    this.poolGeneration++;
    this.pool?.closeAll();
    for (const socket of this.resetting) socket.destroy();
    if (this.stopping) this.spares?.stop();
    else this.spares?.reset();
  }

  /**
   * The way to the database closed for lack of clients (a lazy tunnel): the spares end with it and are not
   * reopened (that would reopen the tunnel) until the next client, even inside the pool's idleTimeout.
   */
  releaseSpares(): void {
    if (this.clientsInUse > 0 || !this.spares) return;
    clearTimeout(this.unusedTimer);
    this.unusedTimer = undefined;
    this.spares.release();
  }

  /**
   * More sessions of the tunnel came up: spares opened while fewer were up all sit on those, and clients that
   * take them would share those sessions' bandwidth. Reopened, they spread over every session (a new stream goes
   * to the session carrying the fewest clients). Only spares: a parked connection cannot move, and is worth its
   * saved login.
   */
  respreadSpares(): void {
    this.spares?.reset();
  }

  /**
   * A client is served: the target is in use, and keeps its spares until idleTimeout after the last client leaves.
   * Spares are opened once the client has its own server connection (see serve): the client's dial goes first,
   * and a tunnel whose sessions carry one connection each (an old SSM agent) is not spent on a spare first.
   */
  private clientArrived(socket: net.Socket): void {
    if (!this.spares || socket.destroyed) return;
    this.clientsInUse++;
    clearTimeout(this.unusedTimer);
    this.unusedTimer = undefined;
    socket.once("close", () => this.clientLeft());
  }

  /** Spares follow use: wanted from a client's arrival until pool.idleTimeoutMs after the last client left. */
  private get inUse(): boolean {
    return this.clientsInUse > 0 || this.unusedTimer !== undefined;
  }

  private clientLeft(): void {
    if (--this.clientsInUse > 0 || this.stopping) return;
    const idleTimeoutMs = (this.options.pool as PoolOptions).idleTimeoutMs;
    this.unusedTimer = setTimeout(() => {
      this.unusedTimer = undefined;
      this.logger.info("no client for the pool's idleTimeout: warm spares closed until the next client", { target: this.name, idleTimeout: describeMs(idleTimeoutMs) });
      this.spares?.release();
    }, idleTimeoutMs).unref();
  }

  stats(): TargetProxyStats {
    let bytesIn = this.closedBytesIn;
    let bytesOut = this.closedBytesOut;
    for (const socket of this.clients) {
      bytesIn += socket.bytesRead;
      bytesOut += socket.bytesWritten;
    }
    return {
      connections: this.clients.size,
      accepted: this.accepted,
      failedLogins: this.failedLogins,
      bytesFromClients: bytesIn,
      bytesToClients: bytesOut,
      parked: this.pool?.size ?? 0,
      spares: this.spares?.size ?? 0,
      lastError: this.lastError,
    };
  }

  /**
   * Stops listening; gives open connections `graceMs` to finish, then closes them.
   * Resolves when every client connection is gone.
   */
  async stop(graceMs = 0): Promise<void> {
    // A server's close completes only once its connections are gone: await it after closing them.
    const serversClosed = this.closeServers();
    this.stopping = true;
    this.closeIdle();
    clearTimeout(this.unusedTimer);
    if (this.clients.size === 0) return serversClosed;
    const allGone = new Promise<void>((resolve) => {
      const check = () => {
        if (this.clients.size === 0) {
          this.off("connection-closed", check);
          resolve();
        }
      };
      this.on("connection-closed", check);
    });
    const timer = setTimeout(() => {
      for (const socket of this.clients) socket.destroy();
    }, graceMs);
    await allGone;
    clearTimeout(timer);
    await serversClosed;
  }

  private bind(address: ListenAddress): Promise<net.Server | null> {
    return new Promise((resolve, reject) => {
      const server = net.createServer({ noDelay: true, keepAlive: true, keepAliveInitialDelay: 60_000 }, (socket) => this.accept(socket));
      server.once("error", (err: NodeJS.ErrnoException) => {
        const where = net.isIPv6(address.host) ? `[${address.host}]:${address.port}` : `${address.host}:${address.port}`;
        if (err.code === "EADDRNOTAVAIL" && net.isIPv6(address.host)) {
          // A machine without IPv6 loopback: 127.0.0.1 still serves.
          this.logger.warn("IPv6 loopback not available, not listening on it", { target: this.name, address: where });
          resolve(null);
        } else if (err.code === "EADDRINUSE") {
          reject(new Error(`target ${this.name}: ${where} is already in use by another program; choose another listen port`));
        } else {
          reject(new Error(`target ${this.name}: cannot listen on ${where}: ${err.message}`));
        }
      });
      server.listen({ host: address.host, port: address.port, exclusive: true }, () => {
        server.removeAllListeners("error");
        server.on("error", (err) => this.logger.error("listener error", { target: this.name, error: err.message }));
        resolve(server);
      });
    });
  }

  private async closeServers(): Promise<void> {
    const servers = this.servers.splice(0);
    const unix = this.unixServer;
    this.unixServer = undefined;
    if (unix) servers.push(unix);
    await Promise.all(servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
    if (unix && this.options.socket) await removeSocketDirectory(this.options.socket);
  }

  private accept(socket: net.Socket, kind: "tcp" | "unix" = "tcp"): void {
    const id = this.nextConnectionId++;
    this.accepted++;
    this.clients.add(socket);
    socket.once("close", () => {
      this.clients.delete(socket);
      this.closedBytesIn += socket.bytesRead;
      this.closedBytesOut += socket.bytesWritten;
      this.emit("connection-closed", id);
    });
    // A client's bytes must never crash the daemon: every path below ends in a handled promise.
    socket.on("error", () => socket.destroy());
    this.serve(socket, id, kind).catch((err: unknown) => {
      this.logger.error("unexpected error serving a client", { target: this.name, connection: id, error: String(err) });
      socket.destroy();
    });
  }

  private async serve(socket: net.Socket, id: number, kind: "tcp" | "unix"): Promise<void> {
    const current: { stream: net.Socket | tls.TLSSocket } = { stream: socket };
    // Looked up while the client sends its startup (only the client is involved so far); decided before
    // anything else happens for it: no dial, no tunnel, no credentials, no error text of the target's.
    const stranger = kind === "unix" ? Promise.resolve(this.checkUnixPeer(socket, id)) : this.checkLocalUser(socket, id);
    let hello;
    try {
      hello = await readClientHello(socket, { tls: this.clientTls, signal: AbortSignal.timeout(this.options.startupTimeoutMs ?? DEFAULT_STARTUP_TIMEOUT_MS) }, current);
    } catch (err) {
      this.refuseStartup(current.stream, err, id);
      return;
    }
    if (hello.kind === "cancel") {
      if (await stranger) {
        hello.socket.destroy();
        return;
      }
      // Clients wait for EOF, and must learn nothing about whether the key matched.
      endAndDrain(hello.socket);
      await this.forwardCancel(hello.request, id);
      return;
    }

    const client = hello.socket;
    // The TLS layer is an emitter of its own: its errors end in 'close', which the relay watches.
    client.on("error", () => client.destroy());
    const refusal = await stranger;
    if (refusal) {
      tellAndClose(client, refusal);
      return;
    }
    let startup: StartupMessage;
    try {
      startup = this.upstreamStartup(hello.message);
    } catch (err) {
      this.refuseStartup(client, err, id);
      return;
    }
    const started = Date.now();
    this.clientArrived(socket);
    const poolKey = this.pool ? upstreamKey(startup) : undefined;
    const parked = poolKey !== undefined ? await this.takeParked(poolKey) : undefined;
    if (client.destroyed) {
      // The client left while it waited (a reset in flight, or the check of a parked connection's carrier): its
      // 'close' has passed, so neither a login nor the relay would see it leave, and the server connection would
      // stay open for nobody.
      parked?.socket.destroy();
      this.logger.debug("client left while waiting for a parked server connection", { target: this.name, connection: id });
      return;
    }
    let connection: ParkedConnection;
    /** A fresh login's greeting and the server's bytes after it. */
    let fresh: { greeting: Buffer; pending: Buffer; onSpare: boolean; earlyPassword: boolean } | undefined;
    try {
      if (parked) {
        connection = parked;
        connection.markIdle(false);
      } else {
        const session = await this.login(client, startup);
        if (!session.ready || !session.backendKey) {
          // The server's FATAL after AuthenticationOk (no such database): the client reads it as sent, then the close.
          client.write(session.greeting);
          await relay(client, session.socket);
          return;
        }
        connection = {
          socket: session.socket,
          backendKey: session.backendKey,
          parameters: session.parameters,
          negotiation: session.negotiation,
          carrier: session.carrier,
          streamError: session.streamError,
          markIdle: session.markIdle,
          usable: session.usable,
        };
        fresh = { greeting: session.greeting, pending: session.pending, onSpare: session.onSpare, earlyPassword: session.sentEarly };
      }
    } catch (err) {
      if (client.destroyed) {
        // The client left mid-login: the aborted dial or login says nothing about the database.
        this.logger.debug("client left during login", { target: this.name, connection: id });
        return;
      }
      const failure = asProxyError(err, "login failed");
      this.failedLogins++;
      this.lastError = { message: failure.message, fix: failure.fix, at: new Date() };
      this.logger.warn("login failed", { target: this.name, connection: id, error: failure.message, fix: failure.fix });
      tellAndClose(client, failure);
      return;
    }
    // The target is in use: a spare for the next cold login, opened now that this client's own login is done.
    this.spares?.fill();
    await this.runSession(client, connection, fresh, { id, poolKey, tls: hello.tls, clientPending: hello.pending, started });
  }

  /**
   * One client's session on a logged-in server connection: the greeting (the server's, or rdsd's own for a
   * reused connection) with a cancel key made for this client, then the relay; a clean end parks the connection.
   */
  private async runSession(
    client: Duplex,
    connection: ParkedConnection,
    fresh: { greeting: Buffer; pending: Buffer; onSpare: boolean; earlyPassword: boolean } | undefined,
    how: { id: number; poolKey: string | undefined; tls: boolean; clientPending: Buffer; started: number },
  ): Promise<void> {
    const upstream = connection.socket;
    const clientKey = newClientKey(connection.backendKey);
    const backend = new BackendMessages(connection.parameters);
    const frontend = new FrontendMessages();
    client.write(fresh ? withClientKey(fresh.greeting, clientKey) : localGreeting(connection, clientKey));
    // From the greeting's end on, a read-only target's server messages pass through the hint injector.
    const toClient = this.readOnlyHint();
    if (fresh && fresh.pending.length > 0) {
      backend.feed(fresh.pending);
      client.write(toClient === undefined ? fresh.pending : toClient(fresh.pending));
    }
    if (how.clientPending.length > 0) {
      frontend.feed(how.clientPending);
      upstream.write(how.clientPending);
    }
    // A backend that a cancel was sent to is not handed on: the signal could land in the next client's query.
    let cancelled = false;
    const realKey = connection.backendKey;
    const unregister = this.cancels.register(clientKey.processId, clientKey.secretKey, () => {
      cancelled = true;
      return this.sendCancelUpstream(cancelPacket(realKey));
    });
    const watch: SessionWatch = {
      frontend,
      backend,
      keepOnCleanEnd: () => how.poolKey !== undefined && this.pool!.capacity > 0 && !cancelled && !this.stopping,
      dropNotice: (error) => this.dropped(connection, error).toErrorResponse(),
    };
    this.logger.info("client connected", { target: this.name, connection: how.id, backendPid: realKey.processId, loginMs: Date.now() - how.started, tls: how.tls, reused: fresh === undefined, spare: fresh?.onSpare === true, earlyPassword: fresh?.earlyPassword === true });
    let end;
    try {
      end = await relay(client, upstream, watch, toClient);
    } finally {
      unregister();
    }
    this.logger.debug("client disconnected", { target: this.name, connection: how.id, backendKept: end === "released" });
    if (end === "released") void this.recycle(how.poolKey!, connection, backend);
  }

  /** Resets a cleanly ended session's server connection and parks it; anything amiss closes it instead. */
  private async recycle(poolKey: string, connection: ParkedConnection, backend: BackendMessages): Promise<void> {
    const generation = this.poolGeneration;
    this.resetting.add(connection.socket);
    const inFlight = this.recycling.get(poolKey) ?? { count: 0, waiters: [] };
    inFlight.count++;
    this.recycling.set(poolKey, inFlight);
    let fit = false;
    try {
      fit = await resetSession(connection.socket, backend, RESET_TIMEOUT_MS);
    } finally {
      this.resetting.delete(connection.socket);
    }
    if (fit && generation === this.poolGeneration && !this.stopping && this.pool && !connection.socket.destroyed) {
      this.pool.park(poolKey, connection);
      connection.markIdle(true);
      this.logger.debug("server connection parked", { target: this.name, backendPid: connection.backendKey.processId, parked: this.pool.size });
    } else {
      connection.socket.destroy();
      this.logger.debug("server connection not reused", { target: this.name, backendPid: connection.backendKey.processId, resetOk: fit });
    }
    // One waiting client per finished reset: it takes what was parked (or logs in afresh if nothing was).
    inFlight.count--;
    inFlight.waiters.shift()?.();
    if (inFlight.count === 0) this.recycling.delete(poolKey);
  }

  /**
   * A parked connection for these startup parameters. When none is parked but one is being reset (its client
   * ended an instant ago: `pgbench -C`, a script's next step), waits for that reset (one round trip upstream)
   * rather than paying a whole login.
   */
  private takeParked(poolKey: string): Promise<ParkedConnection | undefined> {
    return this.firstHandedOut(
      () => this.pool!.take(poolKey) ?? this.awaitReset(poolKey),
      (parked) => {
        this.logger.debug("parked server connection not handed out: its carrier failed a check, a restart closed the kept ones, or the server ended it", { target: this.name, backendPid: parked.backendKey.processId });
        parked.socket.destroy();
      },
    );
  }

  /** Waits for a reset in flight for this key, if any is not yet promised to another client, and takes what it parked. */
  private async awaitReset(poolKey: string): Promise<Taken<ParkedConnection> | undefined> {
    const inFlight = this.recycling.get(poolKey);
    if (!inFlight || inFlight.waiters.length >= inFlight.count) return undefined;
    await new Promise<void>((resolve) => inFlight.waiters.push(resolve));
    return this.pool!.take(poolKey);
  }

  /** A warm spare whose carrier still works (see takeParked), or undefined. */
  private takeSpare(): Promise<SpareConnection | undefined> {
    return this.firstHandedOut(
      () => this.spares?.take(),
      (spare) => {
        this.logger.debug("warm spare not used: its carrier failed a check, a restart closed the kept ones, or the server closed it", { target: this.name });
        spare.stream.destroy();
      },
    );
  }

  /**
   * The first kept connection `take` gives that may go to a client: its carrier vouches for it (see mayHandOut)
   * and the server left it alone while that was asked (Taken.claim). What the carrier failed, a restart closed,
   * or the server ended is closed with `drop`, and the next one is asked in turn; undefined once none is left.
   * Awaits only for what is a promise, so a reuse's connect stays free of extra turns.
   */
  private async firstHandedOut<T extends { usable(): boolean | Promise<boolean> }>(
    take: () => Taken<T> | undefined | Promise<Taken<T> | undefined>,
    drop: (connection: T) => void,
  ): Promise<T | undefined> {
    for (;;) {
      const next = take();
      const taken = next instanceof Promise ? await next : next;
      if (!taken) return undefined;
      const verdict = this.mayHandOut(taken.connection);
      const vouched = typeof verdict === "boolean" ? verdict : await verdict;
      // The server may have ended it while the carrier was checked (after a sleep, say): claim() says so.
      const claimed = taken.claim();
      if (vouched && claimed) return taken.connection;
      drop(taken.connection);
    }
  }

  /**
   * Whether a connection just taken from the idle pool or the spares may go to a client: its carrier vouches for
   * it (a promise only while the dialer is still checking, so a reuse's connect stays free of extra turns). While
   * that check runs the connection is out of its pool, where closeIdle (restart, reroute, stop) does not reach
   * it: whether closeIdle ran meanwhile is looked at once the answer comes.
   */
  private mayHandOut(kept: { usable(): boolean | Promise<boolean> }): boolean | Promise<boolean> {
    const verdict = kept.usable();
    if (typeof verdict === "boolean") return verdict;
    const generation = this.poolGeneration;
    return verdict.then((usable) => usable && generation === this.poolGeneration);
  }

  /** What a client is told when its server connection ended under it at a message boundary. */
  private dropped(connection: ParkedConnection, error: Error | undefined): ProxyError {
    const cause = connection.streamError() ?? error;
    const reason = cause?.message ?? "the server's side closed the connection without an error message";
    const fix =
      cause instanceof ProxyError && cause.fix
        ? `${cause.fix}; then reconnect (\`rdsd status\` shows the tunnel)`
        : "reconnect; `rdsd status` shows the way to the database, and the server's log tells whether it ended the session";
    return new ProxyError(`${connection.carrier} to ${this.name} dropped: ${reason}`, fix, SqlState.connectionFailure);
  }

  /**
   * Linux: the connection must come from a socket of this process's user unless other users are allowed.
   * A ProxyError to send when refused, null when the client may go on.
   */
  private async checkLocalUser(socket: net.Socket, id: number): Promise<ProxyError | null> {
    if (this.options.allowOtherUsers || process.platform !== "linux") return null;
    const ownUid = process.geteuid!();
    let owner: SocketOwner | undefined;
    try {
      owner = await socketOwner({ address: socket.remoteAddress ?? "", port: socket.remotePort ?? 0 }, { address: socket.localAddress ?? "", port: socket.localPort ?? 0 });
      // Once per process and reason: the fallback costs CPU on every connection, but is no news after the first.
      if (owner.fallbackNotice) this.logger.warn(owner.fallbackNotice, { target: this.name });
    } catch (err) {
      this.logger.warn("cannot tell which local user opened a connection", { target: this.name, connection: id, error: (err as Error).message });
    }
    const uid = owner?.uid;
    if (uid === ownUid) return null;
    const who =
      uid !== undefined ? `local user uid ${uid}`
      : owner?.method === "sock_diag" ? "an unknown local user (the kernel knows no open socket for its end of the connection)"
      : owner?.method === "proc" ? "an unknown local user (its socket is not in /proc/net/tcp)"
      : "an unknown local user (the owner of its socket could not be looked up)";
    this.logger.warn("connection from another local user refused", { target: this.name, connection: id, uid: uid ?? "unknown", lookup: owner?.method ?? "failed", client: `${socket.remoteAddress}:${socket.remotePort}` });
    return this.strangerRefusal(who, ownUid);
  }

  /**
   * The same rule on the Unix socket, from the peer's credentials (SO_PEERCRED). Where they cannot be read
   * (no addon) the check is skipped: the socket's own 0600 mode and its directory keep other users out.
   */
  private checkUnixPeer(socket: net.Socket, id: number): ProxyError | null {
    if (this.options.allowOtherUsers) return null;
    const available = peerCredentialsAvailable();
    if (!available.ok) {
      if (!this.peerCheckNoticeGiven) {
        this.peerCheckNoticeGiven = true;
        this.logger.warn("Unix-socket peer check skipped: the socket's permissions alone keep other users out", { target: this.name, reason: available.reason });
      }
      return null;
    }
    const ownUid = process.geteuid!();
    let uid: number | undefined;
    try {
      uid = unixPeerCredentials(socket).uid;
    } catch (err) {
      this.logger.warn("cannot tell which local user opened a connection", { target: this.name, connection: id, error: (err as Error).message });
    }
    if (uid === ownUid) return null;
    this.logger.warn("connection from another local user refused", { target: this.name, connection: id, uid: uid ?? "unknown", lookup: "peercred", client: this.options.socket?.path });
    return this.strangerRefusal(uid !== undefined ? `local user uid ${uid}` : "an unknown local user (its credentials could not be read)", ownUid);
  }

  private strangerRefusal(who: string, ownUid: number): ProxyError {
    return new ProxyError(
      `rdsd refused this connection: it comes from ${who}, and target ${this.name} serves only uid ${ownUid}, the user running rdsd`,
      "connect as the user running rdsd, or set allowOtherUsers: true for this target in the rdsd config to share its database login with every local user",
      SqlState.invalidAuthorization,
    );
  }

  /** For a read-only target: adds "target X is read-only in rdsd's config" to the server's 25006 errors. */
  private readOnlyHint(): ((chunk: Buffer) => Buffer) | undefined {
    if (!this.options.readOnly) return undefined;
    const injector = new ErrorHintInjector(SqlState.readOnlySqlTransaction, `target ${this.name} is read-only in rdsd's config (readOnly: true)`);
    return (chunk) => injector.push(chunk);
  }

  /** Dials, secures and logs in; gives up when the client leaves or the login takes too long. */
  private async login(client: Duplex, startup: StartupMessage) {
    const clientGone = new AbortController();
    const onClientClose = () => clientGone.abort(new ProxyError("client went away", "", SqlState.connectionFailure));
    client.once("close", onClientClose);
    const signal = AbortSignal.any([clientGone.signal, AbortSignal.timeout(this.options.loginTimeoutMs ?? DEFAULT_LOGIN_TIMEOUT_MS)]);
    // One snapshot of the route: a reroute during this login does not mix settings.
    const target = this.upstream;
    const dialer = this.dialer;
    const memory = this.cleartextMemory;
    const identity = { user: startupParameter(startup, "user") ?? target.user, database: startupParameter(startup, "database") ?? "" };
    // Fetch the secret while dialing (credentials may be slow); it is sent only after TLS is verified.
    const secret = target.auth.secret();
    secret.catch(() => {}); // observed below, or moot if dialing fails first
    let sendPasswordEarly = memory.sendEarly(target.auth.method, identity);
    try {
      for (;;) {
        let connected: SpareConnection | undefined;
        try {
          // A warm spare saves the dial, SSLRequest and TLS round trips; nothing was sent on it yet.
          const spare = await this.takeSpare();
          connected = spare ?? (await this.connectUpstream(dialer, target, signal));
          const session = await loginUpstream(connected.socket, target, startup, secret, signal, { sendPasswordEarly });
          memory.learn(identity, session.asked === "cleartext-password");
          return { ...session, onSpare: spare !== undefined, carrier: dialer.carrier ?? "the connection", streamError: connected.streamError, markIdle: connected.markIdle, usable: connected.usable };
        } catch (err) {
          connected?.stream.destroy();
          if (!(err instanceof EarlyPasswordUnwanted)) throw err;
          // The server's method changed (or this identity never used a cleartext password): log in again,
          // waiting to be asked, on a new connection. This server is not sent an early password again.
          memory.learn(identity, false);
          sendPasswordEarly = false;
          this.logger.info("login retried without an early password", { target: this.name, reason: err.message });
        }
      }
    } finally {
      client.off("close", onClientClose);
    }
  }

  /** Dials and opens verify-full TLS: an upstream connection with nothing sent yet (for a client, or a spare). */
  private async connectUpstream(dialer: Dialer, target: UpstreamTarget, signal: AbortSignal, use: "client" | "spare" = "client"): Promise<SpareConnection> {
    const stream = await dialer.dial(signal, use);
    // Whatever the dialer returns, its errors must not crash the daemon; they surface as a close. The first
    // one says why (a tunnel ends its streams with its problem): a client whose session it ends is told.
    let streamError: Error | undefined;
    stream.on("error", (err: Error) => {
      streamError ??= err;
    });
    try {
      const socket = await secureUpstream(stream, target, signal);
      socket.on("error", () => socket.destroy());
      return {
        socket,
        stream,
        streamError: () => streamError,
        markIdle: (idle: boolean) => dialer.markIdle?.(stream, idle),
        usable: () => dialer.usable?.(stream) ?? !stream.destroyed,
      };
    } catch (err) {
      stream.destroy();
      throw err;
    }
  }

  /**
   * The client's startup parameters, in order and byte for byte, except user (the target's) and database,
   * and `options` with the target's session settings after the client's own (so, for the same setting, the target's wins).
   */
  private upstreamStartup(message: StartupMessage): StartupMessage {
    const replication = startupParameter(message, "replication");
    if (replication !== undefined && !["false", "off", "no", "0"].includes(replication.toLowerCase())) {
      throw new ProxyError(
        "replication connections are not supported through rdsd",
        "RDS IAM authentication cannot authenticate replication connections; connect without replication=...",
        SqlState.featureNotSupported,
      );
    }
    const clientUser = startupParameter(message, "user");
    const clientDatabase = startupParameter(message, "database");
    const target = this.upstream.user;
    // libpq sends database = user when none is given: that user is a local name, not a choice of database.
    const namedNone = clientDatabase === undefined || clientDatabase === "" || (clientDatabase === clientUser && clientUser !== target);
    // PostgreSQL's own default is the user's name: with no configured default, that is the target user's.
    const database = namedNone ? (this.options.defaultDatabase ?? target) : undefined;

    const settings = this.options.parameters === undefined ? "" : settingOptions(this.options.parameters);
    const parameters: StartupParameter[] = [];
    let sawUser = false;
    let sawOptions = false;
    for (const p of message.parameters) {
      const name = p.name.toString("latin1");
      if (name === "user") {
        parameters.push(textParameter("user", target));
        sawUser = true;
      } else if (name === "database" && database !== undefined) {
        parameters.push(textParameter("database", database));
      } else if (name === "options" && settings !== "") {
        parameters.push({ name: p.name, value: appendOptions(p.value, settings) });
        sawOptions = true;
      } else {
        parameters.push(p);
      }
    }
    if (!sawUser) parameters.unshift(textParameter("user", target));
    if (database !== undefined && clientDatabase === undefined) parameters.push(textParameter("database", database));
    if (settings !== "" && !sawOptions) parameters.push(textParameter("options", settings));
    return { ...message, parameters };
  }

  private async forwardCancel(request: CancelRequest, id: number): Promise<void> {
    const forward = this.cancels.lookup(request.processId, request.secretKey);
    if (!forward) {
      this.logger.debug("cancel request for an unknown session dropped", { target: this.name, connection: id });
      return;
    }
    try {
      await forward();
      this.logger.info("cancel request forwarded", { target: this.name, connection: id, backendPid: request.processId });
    } catch (err) {
      this.logger.warn("cancel request could not be forwarded", { target: this.name, connection: id, error: asProxyError(err, "cancel").message });
    }
  }

  /** A cancel travels on a new connection of its own, TLS-verified like any other. */
  private async sendCancelUpstream(packet: Buffer): Promise<void> {
    const signal = AbortSignal.timeout(CANCEL_TIMEOUT_MS);
    const stream = await this.dialer.dial(signal);
    stream.on("error", () => {});
    try {
      const socket = await secureUpstream(stream, this.upstream, signal);
      await new Promise<void>((resolve) => {
        socket.once("close", () => resolve());
        socket.on("error", () => {});
        socket.end(packet);
        socket.resume();
        signal.addEventListener("abort", () => socket.destroy(), { once: true });
      });
    } finally {
      stream.destroy();
    }
  }

  private refuseStartup(stream: Duplex, err: unknown, id: number): void {
    if (err instanceof StreamClosedError) {
      stream.destroy();
      return;
    }
    const failure =
      err instanceof InvalidPacketError
        ? new ProxyError(`invalid startup packet: ${err.message}`, "connect with a PostgreSQL client (psql, a GUI, a driver) speaking protocol 3", SqlState.protocolViolation)
        : err instanceof ProxyError
          ? err
          : err instanceof DOMException && err.name === "TimeoutError"
            ? new ProxyError("the client did not complete its startup in time", `connect with a PostgreSQL client; rdsd waits ${describeMs(this.options.startupTimeoutMs ?? DEFAULT_STARTUP_TIMEOUT_MS)} for the startup packet`, SqlState.protocolViolation)
            : asProxyError(err, "startup");
    this.logger.info("client startup refused", { target: this.name, connection: id, error: failure.message });
    tellAndClose(stream, failure);
  }
}

/**
 * A parked connection is handed only to a client whose upstream startup would be byte for byte the same
 * (protocol version, every parameter in order: database, options, application_name, client_encoding, ...).
 */
function upstreamKey(startup: StartupMessage): string {
  return buildStartupMessage(startup.majorVersion, startup.minorVersion, startup.parameters).toString("latin1");
}

function describeMs(ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000} s` : `${ms} ms`;
}

function cancelPacket(key: { processId: number; secretKey: Buffer }): Buffer {
  const out = Buffer.allocUnsafe(12 + key.secretKey.length);
  out.writeUInt32BE(out.length, 0);
  out.writeUInt32BE(CANCEL_REQUEST_CODE, 4);
  out.writeUInt32BE(key.processId, 8);
  key.secretKey.copy(out, 12);
  return out;
}

/** Sends the failure as a FATAL ErrorResponse, then closes; a client that does not read is cut off. */
function tellAndClose(stream: Duplex, failure: ProxyError): void {
  if (stream.destroyed || !stream.writable) {
    stream.destroy();
    return;
  }
  endAndDrain(stream, failure.toErrorResponse());
}

/** How long a client may keep its end open after the proxy has ended its own. */
const CLOSE_GRACE_MS = 2_000;

/**
 * Ends the proxy's side after `last`, reads (and drops) whatever the client still sends so its close is noticed
 * at once, and cuts a client that never closes after CLOSE_GRACE_MS: the socket must not outlive the exchange.
 */
function endAndDrain(stream: Duplex, last?: Buffer): void {
  if (last) stream.end(last);
  else stream.end();
  stream.resume();
  setTimeout(() => stream.destroy(), CLOSE_GRACE_MS).unref();
}
