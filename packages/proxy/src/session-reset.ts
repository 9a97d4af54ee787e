import type { Duplex } from "node:stream";
import { serialize } from "pg-protocol";
import type { BackendMessages } from "@rdsd/pg-wire";

/**
 * What a server connection runs before its next client: DISCARD ALL resets every setting to the session's
 * defaults (the startup parameters included), drops prepared statements, portals, temporary tables and
 * sequence state, UNLISTENs everything and releases session advisory locks. Only connections idle outside a
 * transaction block are reset, so no ROLLBACK is needed first (DISCARD ALL refuses to run in one).
 */
const RESET_QUERY = serialize.query("DISCARD ALL");

/**
 * Resets an idle server connection for another client and waits for its ReadyForQuery. True when it is fit
 * for reuse: no error, idle outside a transaction, at a message boundary. The connection is left paused with
 * no listener of this function's; `backend` has followed (and tracked the ParameterStatus changes of) the answer.
 */
export function resetSession(socket: Duplex, backend: BackendMessages, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const readyBefore = backend.readyCount;
    const errorsBefore = backend.errors;
    const finish = (fit: boolean) => {
      clearTimeout(timer);
      socket.off("data", onData);
      socket.off("close", onClose);
      socket.pause();
      resolve(fit);
    };
    const onData = (chunk: Buffer) => {
      backend.feed(chunk);
      if (backend.broken !== undefined) return finish(false);
      if (backend.readyCount === readyBefore) return;
      finish(backend.readyCount === readyBefore + 1 && backend.errors === errorsBefore && backend.transactionStatus === "I" && backend.atBoundary);
    };
    const onClose = () => finish(false);
    const timer = setTimeout(() => finish(false), timeoutMs);
    socket.on("data", onData);
    socket.once("close", onClose);
    socket.write(RESET_QUERY);
    socket.resume();
  });
}
