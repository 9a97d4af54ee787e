import { ControlError, controlSocketPath, DaemonNotRunningError, requestDaemon, type ControlCommand, type ControlParams, type ControlResult, type DaemonStatus } from "@rdsd/control";
import { CliError, EXIT } from "./exit.js";

/** Asks the running daemon; "not running" becomes exit 3 with how to start it, a refusal exit 1. */
export async function ask<C extends ControlCommand>(command: C, params: ControlParams<C>, timeoutMs?: number, untilClosed = false): Promise<ControlResult<C>> {
  try {
    return await requestDaemon(command, params, { socketPath: controlSocketPath(), ...(timeoutMs ? { timeoutMs } : {}), untilClosed });
  } catch (err) {
    if (err instanceof DaemonNotRunningError) throw new CliError(err.message, err.fix, EXIT.notRunning);
    if (err instanceof ControlError) throw new CliError(err.message, err.fix, EXIT.failure, err.code);
    throw err;
  }
}

/**
 * The running daemon's status, or undefined when none answers. Commands that work without a daemon
 * (`ca`, `logs`, `doctor`, `url`) use it to follow the daemon's own config, state dir and CA.
 */
export async function runningDaemon(): Promise<DaemonStatus | undefined> {
  try {
    return await ask("status", {}, 5_000);
  } catch (err) {
    if (err instanceof CliError && err.code === EXIT.notRunning) return undefined;
    throw err;
  }
}
