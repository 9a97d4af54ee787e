import winston from "winston";
import type { ProxyLogger } from "@rdsd/proxy";
import { redactSecrets } from "@rdsd/iam";

export interface LoggerOptions {
  /** Readable lines on stderr (foreground runs, systemd's journal). */
  console: boolean;
  /** JSON lines in this file, rotated by size. */
  file?: string;
  level?: "debug" | "info" | "warn" | "error";
}

/** The daemon's logger: the proxy's interface plus per-target children. */
export interface DaemonLogger extends ProxyLogger {
  child(fields: Record<string, unknown>): DaemonLogger;
  close(): Promise<void>;
}

const MAX_LOG_FILE_BYTES = 10 * 1024 * 1024;
const KEPT_LOG_FILES = 5;

/** Last line of defence: whatever a message or field holds, signed tokens and keys never reach a log. */
const redact = winston.format((info) => {
  for (const key of Object.keys(info)) {
    const value = info[key];
    if (typeof value === "string") info[key] = redactSecrets(value);
  }
  return info;
});

const readableLine = winston.format.printf((info) => {
  const { level, message, timestamp, target, ...rest } = info as Record<string, unknown>;
  const fields = Object.entries(rest)
    .filter(([k, v]) => v !== undefined && typeof k === "string" && !k.startsWith("Symbol("))
    .map(([k, v]) => `${k}=${typeof v === "string" && !/\s/.test(v) ? v : JSON.stringify(v)}`)
    .join(" ");
  const where = target ? ` [${String(target)}]` : "";
  return `${String(timestamp)} ${String(level).padEnd(5)}${where} ${String(message)}${fields ? " " + fields : ""}`;
});

export function createLogger(options: LoggerOptions): DaemonLogger {
  const transports: winston.transport[] = [];
  if (options.console) {
    transports.push(new winston.transports.Console({ stderrLevels: ["debug", "info", "warn", "error"], format: readableLine }));
  }
  if (options.file) {
    transports.push(
      new winston.transports.File({
        filename: options.file,
        maxsize: MAX_LOG_FILE_BYTES,
        maxFiles: KEPT_LOG_FILES,
        tailable: true,
        format: winston.format.json(),
      }),
    );
  }
  // Redacted and stamped once per entry, before the transports (one per output) each give it their shape.
  const format = winston.format.combine(redact(), winston.format.timestamp());
  const root = winston.createLogger({ level: options.level ?? "info", format, transports, exitOnError: false });
  return wrap(root, root);
}

function wrap(logger: winston.Logger, root: winston.Logger): DaemonLogger {
  return {
    // Checked first: winston builds and streams a debug entry before dropping it (microseconds per connection).
    debug: (message, fields) => void (root.isDebugEnabled() && logger.debug(message, fields)),
    info: (message, fields) => void logger.info(message, fields),
    warn: (message, fields) => void logger.warn(message, fields),
    error: (message, fields) => void logger.error(message, fields),
    child: (fields) => wrap(logger.child(fields), root),
    close: () =>
      new Promise<void>((resolve) => {
        root.on("finish", () => resolve());
        root.end();
      }),
  };
}
