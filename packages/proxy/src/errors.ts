import { buildErrorResponse, SqlState, type SqlStateCode } from "@rdsd/pg-wire";

/**
 * A failure to show a Postgres client: what went wrong (message) and what to do about it (fix).
 * It travels to the client as a FATAL ErrorResponse, the fix in the HINT field so psql and GUIs show it.
 * Never put a token, password or key in any of these strings.
 */
export class ProxyError extends Error {
  constructor(
    message: string,
    readonly fix: string,
    readonly sqlState: SqlStateCode | string = SqlState.unableToConnect,
    readonly detail?: string,
  ) {
    super(message);
    this.name = "ProxyError";
  }

  toErrorResponse(): Buffer {
    return buildErrorResponse({
      severity: "FATAL",
      code: this.sqlState,
      message: this.message,
      ...(this.detail ? { detail: this.detail } : {}),
      hint: this.fix,
    });
  }
}

/** Wraps anything thrown into a ProxyError, keeping a ProxyError as it is. */
export function asProxyError(err: unknown, context: string): ProxyError {
  if (err instanceof ProxyError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new ProxyError(`${context}: ${message}`, "see the rdsd log (`rdsd logs`) for details", SqlState.connectionFailure);
}
