import { ControlError, controlSocketPath, DaemonNotRunningError, requestDaemon, type ControlCommand, type ControlParams, type ControlResult } from "@rdsd/control";
import { CliError, EXIT } from "./exit.js";

/** Asks the running daemon; "not running" becomes exit 3 with how to start it, a refusal exit 1. */
export async function ask<C extends ControlCommand>(command: C, params: ControlParams<C>, timeoutMs?: number, untilClosed = false): Promise<ControlResult<C>> {
  try {
    return await requestDaemon(command, params, { socketPath: controlSocketPath(), ...(timeoutMs ? { timeoutMs } : {}), untilClosed });
  } catch (err) {
    if (err instanceof DaemonNotRunningError) throw new CliError(err.message, err.fix, EXIT.notRunning);
    if (err instanceof ControlError) throw new CliError(err.message, err.fix, EXIT.failure);
    throw err;
  }
}
