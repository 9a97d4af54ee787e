/// <reference path="./node-ipc.d.ts" />
import ipcModule from "node-ipc";
import { ControlError, DaemonNotRunningError } from "./errors.js";
import type { ControlCommand, ControlParams, ControlResponse, ControlResult } from "./messages.js";

export interface RequestOptions {
  socketPath: string;
  /** Default 10 s; `test` and `stop` take longer. */
  timeoutMs?: number;
  /** Resolve only once the daemon closes the connection after answering (`stop`: the process is gone). */
  untilClosed?: boolean;
}

let nextId = 1;

/**
 * Sends one request to the daemon and resolves with its result.
 * Throws DaemonNotRunningError when nothing answers on the socket, ControlError when the daemon refuses.
 */
export function requestDaemon<C extends ControlCommand>(command: C, params: ControlParams<C>, options: RequestOptions): Promise<ControlResult<C>> {
  const id = nextId++;
  const ipc = new ipcModule.IPC();
  ipc.config.silent = true;
  ipc.config.maxRetries = 0;
  ipc.config.stopRetrying = true;
  const peer = `rdsd-${id}`;

  return new Promise<ControlResult<C>>((resolve, reject) => {
    let settled = false;
    let connected = false;
    let answered: { result: ControlResult<C> } | undefined;
    const finish = (err: Error | undefined, result?: ControlResult<C>) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      ipc.disconnect(peer);
      if (err) reject(err);
      else resolve(result!);
    };
    const timer = setTimeout(
      () => finish(new Error(`the daemon did not answer \`${command}\` within ${Math.round((options.timeoutMs ?? 10_000) / 1000)} s (see \`rdsd logs\`)`)),
      options.timeoutMs ?? 10_000,
    );
    ipc.connectTo(peer, options.socketPath, () => {
      const client = ipc.of[peer]!;
      client.on("connect", () => {
        connected = true;
        client.emit("request", { id, command, params });
      });
      client.on("error", (err) => {
        if (!connected && ["ENOENT", "ECONNREFUSED", "ENOTDIR"].includes(err.code ?? "")) finish(new DaemonNotRunningError(options.socketPath));
        else if (!connected) finish(new Error(`cannot reach the daemon on ${options.socketPath}: ${err.message}`));
      });
      client.on("response", (data) => {
        const response = data as ControlResponse;
        if (response.id !== id) return;
        if (!response.ok) finish(ControlError.from(response.error));
        else if (options.untilClosed) answered = { result: response.result as ControlResult<C> };
        else finish(undefined, response.result as ControlResult<C>);
      });
      client.on("destroy", () => {
        if (answered) return finish(undefined, answered.result);
        finish(connected ? new Error(`the daemon closed the connection before answering \`${command}\``) : new DaemonNotRunningError(options.socketPath));
      });
    });
  });
}
