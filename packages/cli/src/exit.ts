/** Exit codes of the CLI contract (product.md). */
export const EXIT = { ok: 0, failure: 1, usage: 2, notRunning: 3 } as const;

/** A failure the CLI reports as "rdsd: MESSAGE" (+ "  fix: ...") and exits with `code`. */
export class CliError extends Error {
  constructor(
    message: string,
    readonly fix: string | null = null,
    readonly code: number = EXIT.failure,
  ) {
    super(message);
    this.name = "CliError";
  }
}

export const VERSION = "0.1.0";
