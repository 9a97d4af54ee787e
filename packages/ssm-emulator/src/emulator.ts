import { once } from "node:events";
import type { Server } from "node:http";
import type { AddressInfo } from "node:net";
import type { SessionInfo } from "./agent-session.js";
import { DestinationMap, isLoopback, parseMapping } from "./destinations.js";
import type { HostMapping } from "./destinations.js";
import { CloseReasons, parseFaultSettings } from "./faults.js";
import type { CloseReason, FaultSettings } from "./faults.js";
import { AdminError, createEmulatorServer } from "./http-server.js";
import { isInstanceId } from "./instances.js";
import type { InstanceConfig } from "./instances.js";
import type { KnownCredential } from "./sigv4.js";
import { SsmService } from "./ssm-service.js";
import type { InstanceInfo } from "./ssm-service.js";

/** Obviously fake keys: never a real AWS key shape. */
export const DEFAULT_CREDENTIALS: KnownCredential = {
  accessKeyId: "AKIDEMULATOR00000001",
  secretAccessKey: "emulator-secret-not-a-real-aws-secret-00000001",
};
export const DEFAULT_REGION = "eu-west-2";
/** The account of keys and instances that name none. */
export const DEFAULT_ACCOUNT = "000000000000";
/** A recent agent: multiplexed mode, keep-alive off for recent clients. */
export const DEFAULT_AGENT_VERSION = "3.3.1802.0";
export const DEFAULT_INSTANCE: InstanceConfig = { instanceId: "i-0e1d2c3b4a5968778", tags: { Name: "rdsd-emulator-bastion" } };

export interface EmulatorOptions {
  /** TCP port for the API, admin and data channel (default 0: any free port). */
  port?: number;
  /** Listen address; loopback only (default 127.0.0.1). */
  host?: string;
  region?: string;
  /**
   * Access keys the API accepts (default: DEFAULT_CREDENTIALS). The first is the one advertised. Each key belongs to
   * its `account` (default DEFAULT_ACCOUNT): a caller sees only its account's instances and sessions, as on AWS.
   */
  credentials?: KnownCredential[];
  /** Managed instances (default: DEFAULT_INSTANCE), each in its `account` (default: the first key's). */
  instances?: InstanceConfig[];
  /** RDS-shaped names to local addresses, as objects or "HOST=ADDR:PORT" strings. */
  hostMap?: (HostMapping | string)[];
  /** The agent version every instance reports unless it sets its own (default 3.3.1802.0). */
  agentVersion?: string;
  /** The real agent's 1024-byte, 1 ms pacing (default true). */
  pacing?: boolean;
  /** The agent gives up on a session whose handshake has not completed in this time (default 15000). */
  handshakeTimeoutMs?: number;
  /** Diagnostic lines (never secrets); default: discarded. */
  log?: (line: string) => void;
}

/** What a client needs, and what the command prints first. */
export interface ClientConfig {
  endpoint: string;
  region: string;
  accessKeyId: string;
  secretAccessKey: string;
}

export type FaultTarget = { sessionId: string } | { instanceId: string };

export interface Emulator {
  readonly endpoint: string;
  readonly port: number;
  readonly region: string;
  readonly credentials: { accessKeyId: string; secretAccessKey: string };
  readonly clientConfig: ClientConfig;
  /** Every session so far; `{ active: true }` leaves out terminated ones. */
  sessions(filter?: { active?: boolean }): SessionInfo[];
  session(sessionId: string): SessionInfo | undefined;
  instances(): InstanceInfo[];
  addInstance(instance: InstanceConfig): InstanceInfo;
  /** Offline: StartSession answers TargetNotConnected, PingStatus is ConnectionLost, open sessions carry nothing. */
  setInstanceOnline(instanceId: string, online: boolean): void;
  /** Adds or replaces a name mapping (sessions already started keep what they resolved). */
  mapHost(mapping: HostMapping | string): void;
  /** Merges fault settings for a session or an instance; null clears them. */
  setFaults(target: FaultTarget, faults: FaultSettings | null): void;
  /** Drops the session's websocket abruptly; false when none was open. */
  dropWebSocket(sessionId: string): boolean;
  /** Sends channel_closed with the reason's text (or a custom Output) and ends the session. */
  closeSession(sessionId: string, reason: CloseReason | { output: string }): void;
  /** Resolves with the next session that reaches `state` and satisfies `match` (or one that already has). */
  waitForSession(match: (s: SessionInfo) => boolean, timeoutMs?: number): Promise<SessionInfo>;
  close(): Promise<void>;
}

/** Starts the emulator on a loopback port. */
export async function startEmulator(options: EmulatorOptions = {}): Promise<Emulator> {
  const host = options.host ?? "127.0.0.1";
  if (!isLoopback(host)) throw new Error(`the emulator listens on loopback only, not ${host}`);
  const region = options.region ?? DEFAULT_REGION;
  const credentials = options.credentials?.length ? options.credentials : [DEFAULT_CREDENTIALS];
  const log = options.log ?? (() => {});
  const defaultAccount = credentials[0]!.account ?? DEFAULT_ACCOUNT;
  const destinations = new DestinationMap((options.hostMap ?? []).map((m) => (typeof m === "string" ? parseMapping(m) : m)));
  let port = 0;
  const hostForUrl = host.includes(":") ? `[${host}]` : host;
  const service = new SsmService(
    {
      region,
      defaultAccount,
      agentVersion: options.agentVersion ?? DEFAULT_AGENT_VERSION,
      pacing: options.pacing ?? true,
      handshakeTimeoutMs: options.handshakeTimeoutMs ?? 15_000,
      streamUrl: (sessionId) => `ws://${hostForUrl}:${port}/v1/data-channel/${sessionId}?role=publish_subscribe`,
      log,
    },
    options.instances ?? [DEFAULT_INSTANCE],
    destinations,
  );

  const emulator: Emulator = {
    endpoint: "",
    port: 0,
    region,
    credentials: { accessKeyId: credentials[0]!.accessKeyId, secretAccessKey: credentials[0]!.secretAccessKey },
    clientConfig: { endpoint: "", region, accessKeyId: "", secretAccessKey: "" },
    sessions: (filter) => service.listSessions(filter),
    session: (id) => service.getSession(id)?.info(),
    instances: () => service.listInstances(),
    addInstance: (instance) => service.addInstance(instance),
    setInstanceOnline: (id, online) => service.setInstanceOnline(id, online),
    mapHost: (mapping) => destinations.set(typeof mapping === "string" ? parseMapping(mapping) : mapping),
    setFaults: (target, faults) => {
      if ("sessionId" in target) {
        if (faults?.startSessionDelayMs !== undefined) throw new Error("startSessionDelayMs applies to instances only");
        const s = service.requireSession(target.sessionId);
        if (faults === null) s.clearFaults();
        else s.setFaults(faults);
      } else service.setInstanceFaults(target.instanceId, faults);
    },
    dropWebSocket: (id) => service.requireSession(id).dropWebSocket(),
    closeSession: (id, reason) => {
      const output = typeof reason === "string" ? CloseReasons[reason] : reason.output;
      if (output === undefined) throw new Error(`unknown close reason ${String(reason)}`);
      service.requireSession(id).terminate(output, typeof reason === "string" ? reason : output);
    },
    waitForSession: (match, timeoutMs = 10_000) => waitForSession(service, match, timeoutMs),
    close: async () => {
      service.terminateAll("emulator closed");
      http.terminateWebSockets();
      server.closeAllConnections();
      server.close();
      await once(server, "close");
    },
  };

  const http = createEmulatorServer({
    service,
    region,
    credentials,
    defaultAccount: DEFAULT_ACCOUNT,
    admin: (method, path, query, body) => adminCall(emulator, method, path, query, body),
    log,
  });
  const server: Server = http.server;
  server.listen(options.port ?? 0, host);
  await once(server, "listening");
  port = (server.address() as AddressInfo).port;
  const endpoint = `http://${hostForUrl}:${port}`;
  Object.assign(emulator, {
    endpoint,
    port,
    clientConfig: { endpoint, region, accessKeyId: emulator.credentials.accessKeyId, secretAccessKey: emulator.credentials.secretAccessKey },
  });
  return emulator;
}

function waitForSession(service: SsmService, match: (s: SessionInfo) => boolean, timeoutMs: number): Promise<SessionInfo> {
  const found = service.listSessions().find(match);
  if (found) return Promise.resolve(found);
  // Session state changes on events we do not all surface; poll briefly with a deadline.
  return new Promise((resolve, reject) => {
    const deadline = Date.now() + timeoutMs;
    const timer = setInterval(() => {
      const hit = service.listSessions().find(match);
      if (hit) {
        clearInterval(timer);
        resolve(hit);
      } else if (Date.now() > deadline) {
        clearInterval(timer);
        reject(new Error(`no session matched within ${timeoutMs} ms`));
      }
    }, 10);
  });
}

/** The admin HTTP API; see README. */
function adminCall(emulator: Emulator, method: string, path: string, query: URLSearchParams, body: unknown): unknown {
  const parts = path.split("/").filter(Boolean);
  const obj = (body ?? {}) as Record<string, unknown>;
  const route = `${method} ${parts[0] ?? ""}${parts[2] ? "/:id/" + parts[2] : parts[1] ? "/:id" : ""}`;
  const id = parts[1] ?? "";
  const needSession = () => {
    if (!emulator.session(id)) throw new AdminError(404, `no session ${id}`);
  };
  const needInstance = () => {
    if (!emulator.instances().some((i) => i.instanceId === id)) throw new AdminError(404, `no instance ${id}`);
  };
  switch (route) {
    case "GET state":
      return { ...emulator.clientConfig, secretAccessKey: undefined, sessions: emulator.sessions(), instances: emulator.instances() };
    case "GET sessions":
      return emulator.sessions({ active: query.get("active") === "true" });
    case "GET sessions/:id":
      needSession();
      return emulator.session(id);
    case "POST sessions/:id/drop-websocket":
      needSession();
      return { dropped: emulator.dropWebSocket(id) };
    case "POST sessions/:id/close": {
      needSession();
      if (typeof obj["output"] === "string") emulator.closeSession(id, { output: obj["output"] });
      else {
        const reason = obj["reason"] ?? "terminated";
        if (typeof reason !== "string" || !(reason in CloseReasons)) {
          throw new AdminError(400, `reason must be one of ${Object.keys(CloseReasons).join(", ")}`);
        }
        emulator.closeSession(id, reason as CloseReason);
      }
      return emulator.session(id);
    }
    case "POST sessions/:id/faults":
      needSession();
      emulator.setFaults({ sessionId: id }, parseFaultSettings(obj));
      return emulator.session(id);
    case "DELETE sessions/:id/faults":
      needSession();
      emulator.setFaults({ sessionId: id }, null);
      return emulator.session(id);
    case "GET instances":
      return emulator.instances();
    case "POST instances": {
      const instanceId = obj["instanceId"];
      if (typeof instanceId !== "string" || !isInstanceId(instanceId)) throw new AdminError(400, "instanceId must look like i-0123456789abcdef0");
      const tags = (obj["tags"] ?? {}) as Record<string, string>;
      const account = obj["account"];
      if (account !== undefined && (typeof account !== "string" || !/^\d{12}$/.test(account))) throw new AdminError(400, "account must be 12 digits");
      return emulator.addInstance(account === undefined ? { instanceId, tags } : { instanceId, tags, account });
    }
    case "POST instances/:id/offline":
      needInstance();
      emulator.setInstanceOnline(id, false);
      return emulator.instances().find((i) => i.instanceId === id);
    case "POST instances/:id/online":
      needInstance();
      emulator.setInstanceOnline(id, true);
      return emulator.instances().find((i) => i.instanceId === id);
    case "POST instances/:id/faults":
      needInstance();
      emulator.setFaults({ instanceId: id }, parseFaultSettings(obj));
      return emulator.instances().find((i) => i.instanceId === id);
    case "DELETE instances/:id/faults":
      needInstance();
      emulator.setFaults({ instanceId: id }, null);
      return emulator.instances().find((i) => i.instanceId === id);
    case "POST map": {
      const from = obj["from"];
      const to = obj["to"];
      if (typeof from !== "string" || typeof to !== "string") throw new AdminError(400, 'map wants {"from":"HOST","to":"ADDR:PORT"}');
      emulator.mapHost({ from, to });
      return { from, to };
    }
    default:
      throw new AdminError(404, `no admin route ${method} /_admin${path}`);
  }
}
