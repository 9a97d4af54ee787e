const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

const DURATION = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/;

/**
 * Parses "500ms", "30s", "10m", "1h" or a plain number of seconds ("90", "1.5") into
 * whole milliseconds. Throws an Error saying what is accepted when the text is none of these.
 */
export function parseDuration(text: string): number {
  const match = DURATION.exec(text.trim());
  if (match === null) {
    throw new Error(`expected a duration such as "500ms", "30s", "10m", "1h" or a number of seconds, got ${JSON.stringify(text)}`);
  }
  const amount = Number(match[1]);
  const unit = match[2] ?? "s";
  const ms = Math.round(amount * (UNIT_MS[unit] ?? 1000));
  if (!Number.isSafeInteger(ms)) throw new Error(`duration ${JSON.stringify(text)} is too large`);
  return ms;
}
