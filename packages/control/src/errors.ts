import type { ControlFailure, ControlFailureCode } from "./messages.js";

/** No daemon answers on the socket (none there, or a stale one left by a crash). */
export class DaemonNotRunningError extends Error {
  constructor(readonly socketPath: string) {
    super(`rdsd is not running (no daemon answers on ${socketPath})`);
    this.name = "DaemonNotRunningError";
  }
  readonly fix = "start it with `rdsd start` (or `rdsd daemon` in the foreground)";
}

/** Another daemon already answers on the socket. */
export class DaemonAlreadyRunningError extends Error {
  constructor(readonly socketPath: string) {
    super(`another rdsd daemon is already running on ${socketPath}`);
    this.name = "DaemonAlreadyRunningError";
  }
  readonly fix = "stop it first with `rdsd stop`, or give this one its own RDSD_RUNTIME_DIR";
}

/** A request the daemon answered with a failure; handlers throw it to choose the code and the fix. */
export class ControlError extends Error {
  constructor(
    readonly code: ControlFailureCode,
    message: string,
    readonly fix: string | null = null,
  ) {
    super(message);
    this.name = "ControlError";
  }

  static from(failure: ControlFailure): ControlError {
    return new ControlError(failure.code, failure.message, failure.fix);
  }
}
