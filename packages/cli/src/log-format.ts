/** One JSON line of the daemon's log file as a readable line ("TIME LEVEL [target] message k=v"). */
export function formatLogLine(line: string): string {
  let entry: Record<string, unknown>;
  try {
    entry = JSON.parse(line) as Record<string, unknown>;
  } catch {
    return line;
  }
  if (typeof entry !== "object" || entry === null) return line;
  const { timestamp, level, message, target, ...rest } = entry;
  const fields = Object.entries(rest)
    .map(([k, v]) => `${k}=${typeof v === "string" && !/\s/.test(v) ? v : JSON.stringify(v)}`)
    .join(" ");
  return `${String(timestamp ?? "")} ${String(level ?? "").padEnd(5)}${target ? ` [${String(target)}]` : ""} ${String(message ?? "")}${fields ? " " + fields : ""}`;
}
