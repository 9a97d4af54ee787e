import { ProxyError } from "@rdsd/proxy";

/** What went wrong and what to do about it: shown in `rdsd status` and sent to Postgres clients. */
export interface TunnelProblem {
  message: string;
  fix: string;
}

/** A tunnel failure as a ProxyError, so the proxy can hand it to the client as an ErrorResponse. */
export function tunnelError(problem: TunnelProblem): ProxyError {
  return new ProxyError(problem.message, problem.fix);
}

/** The problem carried by any error: a ProxyError keeps its fix; anything else gets a generic one. */
export function problemOf(err: unknown, context: string): TunnelProblem {
  if (err instanceof ProxyError) return { message: err.message, fix: err.fix };
  const message = err instanceof Error ? err.message : String(err);
  return { message: `${context}: ${message}`, fix: "see the rdsd log (`rdsd logs`) for details, then `rdsd restart`" };
}

/** Error messages must never carry a session token; the token is opaque base64-ish text, so cut long runs. */
export function scrub(text: string, secrets: readonly string[] = []): string {
  let out = text;
  for (const s of secrets) if (s.length >= 8) out = out.split(s).join("<redacted>");
  return out;
}
