import { dirname } from "node:path";
import { ConfigError } from "@rdsd/config";
import { CONTROL_PROTOCOL, ControlError, DaemonAlreadyRunningError, serveControl, type ControlHandlers, type ControlServer, type ReloadReport } from "@rdsd/control";
import { Daemon } from "./daemon.js";
import { createLogger, type DaemonLogger } from "./logger.js";
import { serviceNotifier } from "./service-notify.js";
import type { TunnelFactory } from "./tunnel-seam.js";

export interface RunDaemonOptions {
  configPath: string;
  stateDir: string;
  socketPath: string;
  logFile: string;
  version: string;
  /** Readable log lines on stderr too (foreground, systemd's journal). */
  console: boolean;
  createTunnel?: TunnelFactory;
  /** Called once the control socket answers (e.g. to tell `rdsd start` or the demo). */
  onReady?: (info: { pid: number; socketPath: string }) => void;
  /** Stop when this aborts (the demo); SIGTERM and SIGINT always stop, SIGHUP reloads. */
  signal?: AbortSignal;
  /** Wire process signals (default true; the demo handles its own). */
  handleSignals?: boolean;
  graceMs?: number;
}

/**
 * `rdsd daemon`: config -> targets -> control socket, until SIGTERM/SIGINT or a `stop` request.
 * Resolves with the exit code: 0 after a graceful stop, 1 when it could not start.
 */
export async function runDaemon(options: RunDaemonOptions): Promise<number> {
  const logger = createLogger({ console: options.console, file: options.logFile });
  const notifier = serviceNotifier(logger);
  const daemon: Daemon = new Daemon({
    configPath: options.configPath,
    stateDir: options.stateDir,
    runtimeDir: dirname(options.socketPath),
    logger,
    onTargetState: () => notifier.status(daemon.targetStatus()),
    ...(options.createTunnel ? { createTunnel: options.createTunnel } : {}),
    ...(options.graceMs !== undefined ? { graceMs: options.graceMs } : {}),
  });
  // SIGHUP and `rdsd reload` alike: systemd hears RELOADING=1, then READY=1 once the targets are settled
  // (also after a refused file: the running configuration stays and is ready).
  const reload = async (): Promise<ReloadReport> => {
    notifier.reloading();
    try {
      return await daemon.reload();
    } finally {
      notifier.ready(daemon.targetStatus());
    }
  };
  let stopRequested!: () => void;
  const stopped = new Promise<void>((resolve) => (stopRequested = resolve));
  let server: ControlServer;
  try {
    // The socket first: a second daemon must be refused before it touches any port.
    server = await serveControl({ socketPath: options.socketPath, handlers: handlers(daemon, options, { reload, stop: () => stopAll() }), onError: (err, command) => logger.error("control request failed", { command, error: String(err) }) });
  } catch (err) {
    const message = err instanceof DaemonAlreadyRunningError ? `${err.message}: ${err.fix}` : `cannot open the control socket ${options.socketPath}: ${(err as Error).message}`;
    logger.error(message);
    await logger.close();
    return 1;
  }
  try {
    await daemon.start();
  } catch (err) {
    logger.error(err instanceof ConfigError ? err.message : `cannot start: ${(err as Error).message}`);
    await daemon.stop();
    await server.close();
    await logger.close();
    return 1;
  }

  let stopping: Promise<void> | undefined;
  const stopAll = (reason = "stop request"): Promise<void> => {
    stopping ??= (async () => {
      notifier.stopping();
      logger.info("stopping", { reason });
      await daemon.stop();
      // The socket goes last: until then `status` still answers and no second daemon can take the ports.
      // The `stop` caller's connection stays open for its answer.
      await server.close();
      logger.info("stopped");
      stopRequested();
    })();
    return stopping;
  };
  const onTerm = (signal: NodeJS.Signals) => void stopAll(signal);
  const onHup = () => {
    reload().catch((err: unknown) => logger.error("reload failed; the running configuration stays", { error: (err as Error).message }));
  };
  if (options.handleSignals ?? true) {
    process.on("SIGTERM", onTerm);
    process.on("SIGINT", onTerm);
    process.on("SIGHUP", onHup);
  }
  options.signal?.addEventListener("abort", () => void stopAll("demo stopping"), { once: true });

  logger.info("rdsd is running", { config: options.configPath, pid: process.pid, socket: options.socketPath });
  // Every target's listeners are bound (or it failed on its own) and the control socket answers.
  notifier.ready(daemon.targetStatus());
  options.onReady?.({ pid: process.pid, socketPath: options.socketPath });
  await stopped;
  process.off("SIGTERM", onTerm);
  process.off("SIGINT", onTerm);
  process.off("SIGHUP", onHup);
  await logger.close();
  return 0;
}

function handlers(daemon: Daemon, options: RunDaemonOptions, actions: { reload: () => Promise<ReloadReport>; stop: () => Promise<void> }): ControlHandlers {
  return {
    status: async ({ target }) => ({
      protocol: CONTROL_PROTOCOL,
      version: options.version,
      pid: process.pid,
      configFile: options.configPath,
      startedAt: daemon.startedAt.toISOString(),
      socket: options.socketPath,
      stateDir: options.stateDir,
      logFile: options.logFile,
      localCaPath: daemon.localCa,
      targets: daemon.targetStatus(target),
    }),
    restart: async ({ target }) => ({ restarted: await daemon.restart(target) }),
    reload: async () => {
      try {
        return await actions.reload();
      } catch (err) {
        if (err instanceof ConfigError) throw new ControlError("bad-config", err.message, "fix the file; the running configuration stays");
        throw err;
      }
    },
    test: ({ target }) => daemon.probe(target),
    stop: async () => {
      await actions.stop();
      return { stopped: true };
    },
  };
}

export type { DaemonLogger };
