// The control protocol between the CLI and the daemon: every request and every answer, typed once.
// `rdsd status --json` prints DaemonStatus as it is: its shape is a public, stable contract.

/** Bumped when a message changes incompatibly; the CLI refuses to talk to a daemon of another protocol. */
export const CONTROL_PROTOCOL = 1;

/** A target's state, as `rdsd status` reports it. */
export type TargetState = "idle" | "connecting" | "ready" | "degraded" | "reconnecting" | "failed";

export const TARGET_STATES: readonly TargetState[] = ["idle", "connecting", "ready", "degraded", "reconnecting", "failed"];

/** What went wrong and what to do about it. Never holds a secret. */
export interface Problem {
  message: string;
  fix: string;
}

/** One target in `rdsd status --json`. */
export interface TargetStatus {
  name: string;
  /** Bound addresses: "127.0.0.1:6432", "[::1]:6432" (empty for a target on a Unix socket only). */
  listen: string[];
  /** The Unix socket's path (`<dir>/.s.PGSQL.<port>`) when the target has `socket`; null otherwise. */
  socket: string | null;
  state: TargetState;
  /** "native", "plugin" or "direct". */
  driver: string;
  /** The database endpoint and port (TLS verifies this name). */
  host: string;
  port: number;
  /** The database user rdsd logs in as. */
  user: string;
  /** The AWS profile of this target's SSM calls and IAM tokens; null = the SDK's default chain ($AWS_PROFILE, env keys, default). */
  profile: string | null;
  /** The region of this target's SSM calls (null until resolved, or when it needs none); tokens are signed for an RDS host's own region. */
  region: string | null;
  /** The database used when the client names none; null when unset. */
  database: string | null;
  /** `readOnly` in the config: sessions start with default_transaction_read_only = on (a guard, not a boundary). */
  readOnly: boolean;
  /** Session settings sent upstream in the startup options (`parameters`, plus readOnly's), by name. */
  parameters: Record<string, string>;
  /** Open client connections. */
  connections: number;
  /** Logged-in server connections parked for reuse (config `pool.idle`). */
  parked: number;
  /** Server connections kept with TLS done and nothing sent, for the next cold login (config `pool.spares`). */
  spares: number;
  bytesFromClients: number;
  bytesToClients: number;
  /** SSM session ids in use (empty for the direct driver). */
  sessionIds: string[];
  /** When the target entered its current state (ISO 8601). */
  since: string;
  /** Age of the cached IAM token in seconds; null when none (password auth, or none signed yet). */
  tokenAgeSeconds: number | null;
  lastError: Problem | null;
  /** Conditions that keep the target "degraded" while it works, each with its fix (an SSM agent too old to multiplex). */
  warnings: Problem[];
}

/** The answer to `status`: the daemon and every target, in config order. */
export interface DaemonStatus {
  protocol: number;
  version: string;
  pid: number;
  configFile: string;
  startedAt: string;
  socket: string;
  stateDir: string;
  logFile: string;
  /** The local CA clients can trust for sslmode=verify-full. */
  localCaPath: string;
  targets: TargetStatus[];
}

export type ProbeStageName = "ca" | "credentials" | "bastion" | "tunnel" | "tls" | "login" | "query";

/** In the order `rdsd test` runs them: the CA that verifies the server is checked first, on this machine. */
export const PROBE_STAGES: readonly ProbeStageName[] = ["ca", "credentials", "bastion", "tunnel", "tls", "login", "query"];

/** One stage of `rdsd test TARGET`. */
export interface ProbeStage {
  name: ProbeStageName;
  status: "ok" | "failed" | "skipped";
  /** Wall time of the stage in milliseconds. */
  ms: number;
  /** What was found ("credentials from profile dev-sso, expire in 5h"), or why it was skipped. */
  detail: string;
  error: Problem | null;
}

export interface ProbeReport {
  target: string;
  ok: boolean;
  stages: ProbeStage[];
  /** Found on the way without failing a stage (an SSM agent too old to multiplex), each with its fix. */
  warnings: Problem[];
}

export interface ReloadReport {
  added: string[];
  removed: string[];
  changed: string[];
  unchanged: string[];
  /** Added or changed targets that could not start (a port taken, say); the rest of the file is applied. */
  failed: Array<{ target: string } & Problem>;
}

/** Every command the daemon answers: its parameters and its result. */
export interface ControlCalls {
  status: { params: { target?: string }; result: DaemonStatus };
  restart: { params: { target?: string }; result: { restarted: string[] } };
  reload: { params: Record<string, never>; result: ReloadReport };
  test: { params: { target: string }; result: ProbeReport };
  /** Answered once the daemon has stopped everything; the process exits right after. */
  stop: { params: Record<string, never>; result: { stopped: true } };
}

export type ControlCommand = keyof ControlCalls;
export type ControlParams<C extends ControlCommand> = ControlCalls[C]["params"];
export type ControlResult<C extends ControlCommand> = ControlCalls[C]["result"];

export type ControlRequest = { [C in ControlCommand]: { id: number; command: C; params: ControlParams<C> } }[ControlCommand];

/** Why a request failed: `unknown-target` and `bad-request` are the caller's mistake. */
export type ControlFailureCode = "unknown-target" | "bad-request" | "bad-config" | "failed";

export interface ControlFailure {
  code: ControlFailureCode;
  message: string;
  fix: string | null;
}

export type ControlResponse =
  | { id: number; ok: true; result: ControlResult<ControlCommand> }
  | { id: number; ok: false; error: ControlFailure };

/** The daemon's side: one function per command. */
export type ControlHandlers = { [C in ControlCommand]: (params: ControlParams<C>) => Promise<ControlResult<C>> };

const COMMANDS: readonly ControlCommand[] = ["status", "restart", "reload", "test", "stop"];
const TARGET_NAME = /^[a-z0-9][a-z0-9_-]*$/;

/** A request as it arrives off the socket: anything. Returns a valid request or a reason. */
export function parseControlRequest(value: unknown): { request: ControlRequest } | { error: string; id: number } {
  if (typeof value !== "object" || value === null) return { error: "a request must be an object", id: 0 };
  const raw = value as Record<string, unknown>;
  const id = typeof raw.id === "number" && Number.isSafeInteger(raw.id) ? raw.id : 0;
  const command = raw.command;
  if (typeof command !== "string" || !COMMANDS.includes(command as ControlCommand)) {
    return { error: `unknown command ${JSON.stringify(String(command)).slice(0, 40)}`, id };
  }
  const params = raw.params ?? {};
  if (typeof params !== "object" || params === null || Array.isArray(params)) return { error: "params must be an object", id };
  const target = (params as Record<string, unknown>).target;
  const wantsTarget = command === "test";
  const takesTarget = command === "status" || command === "restart" || command === "test";
  if (target === undefined) {
    if (wantsTarget) return { error: `${command} needs a target name`, id };
    return { request: { id, command, params: {} } as ControlRequest };
  }
  if (!takesTarget) return { error: `${command} takes no target`, id };
  if (typeof target !== "string" || !TARGET_NAME.test(target) || target.length > 100) return { error: "a target name is [a-z0-9][a-z0-9_-]*", id };
  return { request: { id, command, params: { target } } as ControlRequest };
}
