// The resolved configuration: what the rest of rdsd consumes. Every value here has been
// validated, every default applied, every path made absolute. Nothing secret is held:
// password sources are references (an env var name, a file path), read only when used.

/** The whole configuration after loading one file. */
export interface RdsdConfig {
  /** Absolute path of the file this configuration was read from. */
  file: string;
  /** The top-level `aws` section (already merged into each target's `aws`). */
  aws: AwsSettings;
  /** `notifications.desktop`: a desktop notification when an SSO session the targets need is about to end. Default true. */
  notifications: { desktop: boolean };
  /** The targets in the order they appear in the file. Names are unique. */
  targets: TargetConfig[];
}

/** AWS identity and region: at the top level, in `defaults` and per target (the most specific wins, key by key). */
export interface AwsSettings {
  /** Named profile from the shared config files (SSO, role, credential_process...). Unset: $AWS_PROFILE, then "default". */
  profile?: string;
  /** Region such as "eu-west-2" for SSM calls. Unset: the profile's region, then $AWS_REGION. IAM tokens are signed for an RDS host's own region. */
  region?: string;
}

/** One local address a target's proxy listens on. Loopback unless the target sets allowNonLoopback: true. */
export interface ListenAddress {
  /** IP literal to bind: "127.0.0.1", "::1" or another loopback address. IPv6 without brackets. */
  host: string;
  /** TCP port, 1-65535. */
  port: number;
}

/**
 * A Unix-socket listener, libpq's convention: the socket file is `.s.PGSQL.<port>` in `directory`, so
 * `psql "host=<directory> port=<port>"` reaches it.
 */
export interface SocketListener {
  /** Absolute directory holding the socket. */
  directory: string;
  /** The number in the file name: the target's TCP listen port, or 5432 when it has none. */
  port: number;
  /** Absolute path of the socket file: `<directory>/.s.PGSQL.<port>`. */
  path: string;
  /**
   * true (`socket: true`): rdsd's own per-target directory under the runtime directory, created private
   * (0700) at start and removed on stop. false (`socket: PATH`): the user's directory, created if missing.
   */
  managed: boolean;
}

/** Where a password comes from. The secret itself is never stored in the config. */
export type PasswordSource =
  /** Read from this environment variable of the daemon's process when logging in. */
  | { env: string }
  /** Read from this file (absolute path; trailing newline stripped by the reader) when logging in. */
  | { file: string };

/** How the proxy logs in to the database upstream. */
export type AuthConfig =
  /** A fresh RDS IAM token signed for host:port and the user (the default). */
  | { kind: "iam" }
  /** A static password, resolved from its source at login time. */
  | { kind: "password"; source: PasswordSource };

/** The EC2 instance that SSM port-forwards through. */
export type BastionConfig =
  /** A specific instance, e.g. "i-0123456789abcdef0". */
  | { instanceId: string }
  /** The first online managed instance carrying this tag, e.g. Name=db-bastion. */
  | { tag: { key: string; value: string } };

/** Which way bytes get to the database. */
export type TunnelDriver =
  /** rdsd's own SSM data-channel client (no external tools). */
  | "native"
  /** The official session-manager-plugin binary, spawned per session. */
  | "plugin"
  /** No tunnel: a plain TCP connection (to `address`, else host:port). For tests and VPNs. */
  | "direct";

/** When tunnels are opened. */
export type TunnelMode =
  /** Opened at start and kept open. */
  | "eager"
  /** Opened on the first client connection, closed after `idleTimeoutMs` without clients. */
  | "lazy";

/** How a target's tunnel is built and kept. */
export interface TunnelConfig {
  /** Transport to the database; default "native". */
  driver: TunnelDriver;
  /** Only with driver "direct": connect here instead of host:port (TLS still verifies `host`). */
  address?: { host: string; port: number };
  /** Default "eager". */
  mode: TunnelMode;
  /** Lazy mode: close the tunnel after this long without clients. Default 600000 (10m). */
  idleTimeoutMs: number;
  /** SSM sessions used in parallel for this target, 1-8 (each is capped near 0.8 MB/s). Default 1. */
  sessions: number;
  /** Plugin driver: the session-manager-plugin executable. A bare name is looked up in $PATH. */
  pluginPath: string;
}

/**
 * Reuse of logged-in server connections and warm spares for one target (see config/README.md, `pool`).
 * `false` in the config turns both off.
 */
export interface PoolConfig {
  /** Server connections parked for reuse after clients end cleanly, at most; 0-100. Default 4. */
  idle: number;
  /** A parked connection unused this long is closed. Default 300000 (5m). */
  idleTimeoutMs: number;
  /** Connections kept with TLS done and nothing sent, for the next cold login; 0-8. Default 1 for SSM drivers, 0 for direct. */
  spares: number;
}

/** Upstream TLS settings. verify-full always: the certificate must match `host`. */
export interface UpstreamTls {
  /** "rds" = the bundled RDS CA certificates; otherwise an absolute path to a PEM file of CAs. */
  ca: "rds" | string;
}

/** One database reachable through rdsd, fully resolved (defaults merged). */
export interface TargetConfig {
  /** Unique name, [a-z0-9][a-z0-9_-]*: used in CLI commands and URLs. */
  name: string;
  /** The real database endpoint, e.g. orders-dev.abc123xyz.eu-west-2.rds.amazonaws.com. */
  host: string;
  /** The database's port on `host`; default 5432. */
  port: number;
  /** Local addresses the proxy listens on: a bare port expands to 127.0.0.1 and ::1. Empty when only `socket` is set. */
  listen: ListenAddress[];
  /** `socket: true` or `socket: PATH`: also (or only) listen on a Unix socket. Absent: TCP only. */
  socket?: SocketListener;
  /** Database user to log in as (for IAM: one granted rds_iam). */
  user: string;
  /** Database used when the client names none; unset lets the client's choice (or the user name) stand. */
  database?: string;
  /** The AWS profile and region for this target's SSM calls and IAM tokens (target over defaults over top level). */
  aws: AwsSettings;
  /** How to log in upstream; default IAM. */
  auth: AuthConfig;
  /** Upstream TLS; default { ca: "rds" }. */
  tls: UpstreamTls;
  /** Whether the local listener offers TLS (answers SSLRequest with 'S'); default true. */
  clientTls: boolean;
  /**
   * `allowOtherUsers: true`: connections from other local users are served too (Linux checks the client
   * socket's owner). Absent = false: only the user running rdsd may use this target's database login.
   */
  allowOtherUsers?: boolean;
  /**
   * `allowNonLoopback: true`: `listen` may name a non-loopback address, exposing the database login to the
   * network (the daemon warns loudly at start). Absent = false: loopback only.
   */
  allowNonLoopback?: boolean;
  /**
   * Session parameters sent upstream as `-c NAME=VALUE` in the startup `options`, after the client's own
   * options (so these win over the client's `-c`). Names lowercased, values as PostgreSQL reads them
   * (`on`/`off` for booleans). Includes `default_transaction_read_only: "on"` when `readOnly`. Absent: none.
   */
  parameters?: Record<string, string>;
  /** `readOnly: true`: the shortcut for default_transaction_read_only = on (a guard against accidents, not a boundary). */
  readOnly?: boolean;
  /** How bytes reach the database. */
  tunnel: TunnelConfig;
  /** The SSM bastion; always set for the native and plugin drivers, optional for direct. */
  bastion?: BastionConfig;
  /** Connection reuse and warm spares; false: every client logs in afresh on a new connection. */
  pool: PoolConfig | false;
}

/** What changed between two configurations, by target name (used by reload). */
export interface ConfigDiff {
  /** In the new config only, in its order. */
  added: string[];
  /** In the old config only, in its order. */
  removed: string[];
  /** In both with different resolved settings (each target's merged `aws` included). */
  changed: string[];
  /** In both and identical. */
  unchanged: string[];
  /** The aws section differs: credentials and signing change for every target. */
  awsChanged: boolean;
}
