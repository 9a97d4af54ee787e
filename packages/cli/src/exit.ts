/** Exit codes of the CLI contract (product.md). */
export const EXIT = { ok: 0, failure: 1, usage: 2, notRunning: 3 } as const;

/** What `--json` prints as `error.code` when the error names none: one word per exit code. */
const CODE_OF_EXIT: Record<number, string> = { [EXIT.failure]: "failed", [EXIT.usage]: "usage", [EXIT.notRunning]: "not-running" };

/** A failure the CLI reports as "rdsd: MESSAGE" (+ "  fix: ...") and exits with `code`. */
export class CliError extends Error {
  /** A stable word for scripts (`--json` prints it as error.code): "not-running", "unknown-target", "usage"... */
  readonly reason: string;

  constructor(
    message: string,
    readonly fix: string | null = null,
    readonly code: number = EXIT.failure,
    reason?: string,
  ) {
    super(message);
    this.name = "CliError";
    this.reason = reason ?? CODE_OF_EXIT[code] ?? "failed";
  }
}

/** The error object `--json` commands print instead of their result: `{"error": {"message", "fix", "code"}}`. */
export function jsonError(message: string, fix: string | null, code: string): string {
  return JSON.stringify({ error: { message, fix, code } }, null, 2) + "\n";
}

export const VERSION = "0.1.0";
