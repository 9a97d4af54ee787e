/** The logging the proxy needs; the daemon adapts its logger to it. Fields must never hold secrets. */
export interface ProxyLogger {
  debug(message: string, fields?: Record<string, unknown>): void;
  info(message: string, fields?: Record<string, unknown>): void;
  warn(message: string, fields?: Record<string, unknown>): void;
  error(message: string, fields?: Record<string, unknown>): void;
}

export const silentLogger: ProxyLogger = { debug() {}, info() {}, warn() {}, error() {} };
