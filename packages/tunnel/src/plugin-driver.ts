import { spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { EventEmitter } from "node:events";
import { connect } from "node:net";
import type { Socket } from "node:net";
import type { Duplex } from "node:stream";
import { compareVersions } from "@rdsd/ssm-protocol";
import { scrub, tunnelError } from "./errors.js";
import type { TunnelProblem } from "./errors.js";
import { freePort } from "./free-port.js";
import { silentLogger } from "./logger.js";
import type { TunnelLogger } from "./logger.js";
import type { SessionFactory, TunnelSession, TunnelSessionEvents } from "./session.js";
import type { SessionCredentials, SsmApi } from "./ssm-api.js";

export interface PluginDriverOptions {
  api: SsmApi;
  /** The session-manager-plugin executable (a bare name is looked up in PATH). */
  pluginPath: string;
  host: string;
  port: number;
  profile?: string | undefined;
  /** The SSM endpoint the plugin is told about (default https://ssm.<region>.amazonaws.com). */
  endpoint?: string | undefined;
  logger?: TunnelLogger;
  /** How long the plugin may take to open its port (default 20 s). */
  startTimeoutMs?: number;
}

/** The AWS CLI passes the StartSession response through an environment variable above this plugin version. */
const ENV_RESPONSE_MIN_VERSION = "1.2.497.0";

/**
 * tunnel.driver: plugin. Runs the official session-manager-plugin the way the AWS CLI does, one process per
 * session, on a free 127.0.0.1 port. It is trusted for nothing: every session is probed end to end, stopped with
 * SIGINT, and terminated on AWS by rdsd itself.
 */
export class PluginDriver implements SessionFactory {
  readonly driver = "plugin" as const;
  private versionCheck: Promise<{ found: boolean; version: string | undefined }> | undefined;

  constructor(private readonly options: PluginDriverOptions) {}

  async open(instanceId: string, signal: AbortSignal): Promise<TunnelSession> {
    const { found, version } = await (this.versionCheck ??= pluginVersion(this.options.pluginPath));
    if (!found) {
      this.versionCheck = undefined; // look again next time: the user may install it
      throw tunnelError(pluginNotFound(this.options.pluginPath));
    }
    const localPort = await freePort();
    const sessionRequest = { instanceId, host: this.options.host, port: this.options.port, localPort };
    const request = this.options.api.startSessionInput(sessionRequest);
    const credentials = await this.options.api.startSession(sessionRequest, signal);
    try {
      return await PluginSession.spawn({ ...this.options, instanceId, localPort, credentials, request, useEnv: useEnvForm(version) }, signal);
    } catch (err) {
      await this.options.api.terminateSession(credentials.sessionId).catch(() => {});
      throw err;
    }
  }
}

export function useEnvForm(version: string | undefined): boolean {
  return version !== undefined && compareVersions(version, ENV_RESPONSE_MIN_VERSION) === 1;
}

interface SpawnOptions extends PluginDriverOptions {
  instanceId: string;
  localPort: number;
  credentials: SessionCredentials;
  request: unknown;
  useEnv: boolean;
}

/** What a line of the plugin's stdout means. */
export type PluginLine =
  | { kind: "started"; sessionId: string }
  | { kind: "port-opened"; port: number; sessionId: string }
  | { kind: "waiting" }
  | { kind: "destination-failed" }
  | { kind: "exiting"; sessionId: string; reason: string | undefined }
  | { kind: "fatal"; reason: string }
  | { kind: "other"; text: string };

/** Parses one stdout line of the plugin (pure). */
export function parsePluginLine(line: string): PluginLine {
  const text = line.trim();
  let m: RegExpExecArray | null;
  if ((m = /^Starting session with SessionId: (\S+)/.exec(text))) return { kind: "started", sessionId: m[1]! };
  if ((m = /Port (\d+) opened for sessionId (\S+?)\.?(?:\s|$)/.exec(text))) return { kind: "port-opened", port: Number(m[1]), sessionId: m[2]! };
  if (/^Waiting for connections/.test(text)) return { kind: "waiting" };
  if (/^Connection to destination port failed/.test(text)) return { kind: "destination-failed" };
  if ((m = /^Exiting session with sessionId: (\S+?)\.?$/.exec(text))) return { kind: "exiting", sessionId: m[1]!, reason: undefined };
  if ((m = /^SessionId: (\S+) : (.*)$/.exec(text))) return { kind: "exiting", sessionId: m[1]!, reason: m[2]! };
  if ((m = /^Cannot perform start session: (.*)$/.exec(text))) return { kind: "fatal", reason: m[1]! };
  return { kind: "other", text };
}

export class PluginSession extends EventEmitter<TunnelSessionEvents> implements TunnelSession {
  readonly driver = "plugin" as const;
  readonly singleUse = false;
  readonly id: string;
  readonly instanceId: string;
  private readonly sockets = new Set<Socket>();
  private endedWith: { problem: TunnelProblem | undefined } | undefined;
  private closing: Promise<void> | undefined;
  private readonly exited: Promise<void>;
  /** The plugin reported a failed dial and no connection has carried bytes back since. */
  private destinationFailing = false;

  private constructor(
    private readonly options: SpawnOptions,
    private readonly child: ChildProcess,
  ) {
    super();
    this.id = options.credentials.sessionId;
    this.instanceId = options.instanceId;
    this.exited = new Promise((resolve) => child.once("exit", () => resolve()));
  }

  /** Spawns the plugin and resolves once its port is open. */
  static async spawn(options: SpawnOptions, signal: AbortSignal): Promise<PluginSession> {
    const logger = options.logger ?? silentLogger;
    const { credentials } = options;
    const response = JSON.stringify({ SessionId: credentials.sessionId, TokenValue: credentials.tokenValue, StreamUrl: credentials.streamUrl });
    const envName = `AWS_SSM_START_SESSION_RESPONSE_${randomBytes(6).toString("hex")}`;
    const region = options.api.region;
    const endpoint = options.endpoint ?? `https://ssm.${region}.amazonaws.com`;
    // The env-var form keeps the token out of the process list; only very old plugins need it in argv.
    const args = [options.useEnv ? envName : response, region, "StartSession", options.profile ?? "", JSON.stringify(options.request), endpoint];
    if (!options.useEnv) logger.warn("session-manager-plugin is older than 1.2.497.0: its session token is visible in the process list; upgrade it", { plugin: options.pluginPath });
    const child = spawn(options.pluginPath, args, {
      env: options.useEnv ? { ...process.env, [envName]: response } : process.env,
      stdio: ["ignore", "pipe", "pipe"],
    });
    const session = new PluginSession(options, child);
    const secrets = [credentials.tokenValue];
    const startTimeout = options.startTimeoutMs ?? 20_000;
    const ready = new Promise<void>((resolve, reject) => {
      const fail = (problem: TunnelProblem) => {
        reject(tunnelError(problem));
        void session.close();
      };
      const timer = setTimeout(
        () => fail({ message: `session-manager-plugin did not open its port within ${startTimeout / 1000} s (session ${session.id})`, fix: "check that ssmmessages is reachable from this machine (the plugin hangs on an unreachable StreamUrl)" }),
        startTimeout,
      );
      const onAbort = () => fail({ message: "starting session-manager-plugin was cancelled", fix: "" });
      signal.addEventListener("abort", onAbort, { once: true });
      const settle = () => {
        clearTimeout(timer);
        signal.removeEventListener("abort", onAbort);
      };
      child.once("error", (err: NodeJS.ErrnoException) => {
        settle();
        reject(
          tunnelError(
            err.code === "ENOENT"
              ? pluginNotFound(options.pluginPath)
              : { message: `cannot run ${options.pluginPath}: ${err.message}`, fix: "check tunnel.pluginPath, or use tunnel.driver: native" },
          ),
        );
      });
      session.onLine = (line) => {
        if (line.kind === "port-opened") {
          settle();
          resolve();
        } else if (line.kind === "fatal" || line.kind === "exiting") {
          settle();
          fail({ message: `session-manager-plugin failed: ${scrub(line.kind === "fatal" ? line.reason : (line.reason ?? "exited"), secrets)}`, fix: "see the rdsd log; rdsd retries by itself" });
        }
      };
      child.once("exit", (code, sig) => {
        settle();
        reject(tunnelError({ message: `session-manager-plugin exited before opening its port (${sig ?? `code ${code}`})`, fix: "run it by hand (`aws ssm start-session ...`) to see why, or use tunnel.driver: native" }));
      });
    });
    session.followOutput(secrets, logger);
    await ready;
    session.onLine = (line) => session.handleLine(line);
    child.once("exit", (code, sig) => session.finish({ message: `session-manager-plugin for session ${session.id} exited (${sig ?? `code ${code}`})`, fix: "rdsd opens a new session by itself" }));
    logger.info("session-manager-plugin ready", { session: session.id, port: options.localPort, pid: child.pid });
    return session;
  }

  private onLine: (line: PluginLine) => void = () => {};

  private followOutput(secrets: string[], logger: TunnelLogger): void {
    let buffered = "";
    this.child.stdout!.setEncoding("utf8");
    this.child.stdout!.on("data", (text: string) => {
      buffered += text;
      // "Port N opened for sessionId X." is printed without a newline in multiplexed mode: parse it as it comes.
      const parts = buffered.split("\n");
      buffered = parts.pop() ?? "";
      for (const part of parts) this.onLine(parsePluginLine(part));
      if (/Port \d+ opened for sessionId \S+\./.test(buffered)) {
        this.onLine(parsePluginLine(buffered));
        buffered = "";
      }
    });
    this.child.stderr!.setEncoding("utf8");
    this.child.stderr!.on("data", (text: string) => logger.debug("session-manager-plugin stderr", { session: this.id, text: scrub(text.trim(), secrets) }));
  }

  private handleLine(line: PluginLine): void {
    if (line.kind === "destination-failed") {
      this.destinationFailing = true;
      this.emit("destination-error", {
        message: `bastion ${this.instanceId} could not connect to ${this.options.host}:${this.options.port}`,
        fix: "check the database's security group allows the bastion, that the database is available, and the target's host and port",
      });
    } else if (line.kind === "exiting") {
      this.finish({ message: `session-manager-plugin ended session ${this.id}${line.reason ? `: ${line.reason}` : ""}`, fix: "rdsd opens a new session by itself" });
    }
  }

  get activeStreams(): number {
    return this.sockets.size;
  }

  get ended(): boolean {
    return this.endedWith !== undefined;
  }

  get available(): boolean {
    return !this.ended;
  }

  openStream(signal?: AbortSignal): Promise<Duplex> {
    if (this.endedWith) return Promise.reject(tunnelError(this.endedWith.problem ?? { message: `SSM session ${this.id} is closed`, fix: "retry: rdsd opens a new session" }));
    return new Promise((resolve, reject) => {
      const socket = connect({ host: "127.0.0.1", port: this.options.localPort, noDelay: true });
      const onAbort = () => {
        socket.destroy();
        reject(tunnelError({ message: "connecting to session-manager-plugin timed out", fix: "rdsd replaces the session by itself" }));
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      socket.once("connect", () => {
        signal?.removeEventListener("abort", onAbort);
        socket.removeAllListeners("error");
        this.sockets.add(socket);
        socket.once("close", () => {
          this.sockets.delete(socket);
          // The plugin's port hides the dial: a connection that carried bytes back reached the database.
          if (socket.bytesRead > 0 && this.destinationFailing) {
            this.destinationFailing = false;
            this.emit("destination-ok");
          }
        });
        resolve(socket);
      });
      socket.once("error", (err) => {
        signal?.removeEventListener("abort", onAbort);
        reject(tunnelError({ message: `session-manager-plugin's port ${this.options.localPort} refused the connection (${err.message})`, fix: "rdsd replaces the session by itself" }));
      });
    });
  }

  /** SIGINT (the plugin then tells the agent), SIGKILL if it lingers, then TerminateSession ourselves. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      this.finish(undefined);
      if (this.child.exitCode === null && this.child.signalCode === null) {
        this.child.kill("SIGINT");
        const timer = setTimeout(() => this.child.kill("SIGKILL"), 5_000);
        await this.exited;
        clearTimeout(timer);
      }
      await this.options.api.terminateSession(this.id, AbortSignal.timeout(10_000)).catch((err: Error) => {
        (this.options.logger ?? silentLogger).warn("TerminateSession failed", { session: this.id, error: err.message });
      });
    })();
    return this.closing;
  }

  private finish(problem: TunnelProblem | undefined): void {
    if (this.endedWith) return;
    this.endedWith = { problem };
    for (const socket of this.sockets) socket.destroy(problem ? tunnelError(problem) : undefined);
    if (problem) void this.close();
    this.emit("end", problem);
  }
}

function pluginNotFound(pluginPath: string): TunnelProblem {
  return {
    message: `session-manager-plugin not found (${pluginPath})`,
    fix: "install the Session Manager plugin (https://docs.aws.amazon.com/systems-manager/latest/userguide/session-manager-working-with-install-plugin.html), set tunnel.pluginPath, or use tunnel.driver: native",
  };
}

/** Whether the plugin runs, and its version (`--version`) when it prints one. */
export async function pluginVersion(pluginPath: string): Promise<{ found: boolean; version: string | undefined }> {
  return new Promise((resolve) => {
    const child = spawn(pluginPath, ["--version"], { stdio: ["ignore", "pipe", "ignore"] });
    let out = "";
    child.stdout.setEncoding("utf8");
    child.stdout.on("data", (t: string) => (out += t));
    child.once("error", () => resolve({ found: false, version: undefined }));
    child.once("exit", () => {
      const m = /(\d+\.\d+\.\d+\.\d+)/.exec(out);
      resolve({ found: true, version: m ? m[1] : undefined });
    });
    setTimeout(() => child.kill("SIGKILL"), 5_000).unref();
  });
}
