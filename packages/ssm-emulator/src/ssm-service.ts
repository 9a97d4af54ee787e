import { randomBytes } from "node:crypto";
import { EventEmitter } from "node:events";
import type { PortSessionProperties } from "@rdsd/ssm-protocol";
import { AgentSession } from "./agent-session.js";
import type { Caller, SessionInfo } from "./agent-session.js";
import { awsErrors } from "./aws-errors.js";
import { DestinationMap } from "./destinations.js";
import type { FaultSettings } from "./faults.js";
import { isInstanceId } from "./instances.js";
import type { InstanceConfig, InstanceState } from "./instances.js";

export const PORT_DOCUMENTS = {
  "AWS-StartPortForwardingSessionToRemoteHost": { requiresHost: true },
  "AWS-StartPortForwardingSession": { requiresHost: false },
} as const;
type PortDocumentName = keyof typeof PORT_DOCUMENTS;

export interface ServiceSettings {
  region: string;
  /** Owner of instances that name none. */
  defaultAccount: string;
  agentVersion: string;
  pacing: boolean;
  handshakeTimeoutMs: number;
  /** Builds the StreamUrl for a session id. */
  streamUrl(sessionId: string): string;
  log(line: string): void;
}

export interface InstanceInfo extends InstanceState {
  pingStatus: "Online" | "ConnectionLost";
  faults: FaultSettings;
}

type Json = Record<string, unknown>;

/** The SSM API's state and operations: instances, sessions, and the four operations a port-forwarding client uses. */
export class SsmService extends EventEmitter<{ "session-started": [SessionInfo]; "session-ended": [SessionInfo] }> {
  readonly destinations: DestinationMap;
  private readonly instances = new Map<string, InstanceState>();
  private readonly instanceFaults = new Map<string, FaultSettings>();
  private readonly sessions = new Map<string, AgentSession>();

  constructor(
    private readonly settings: ServiceSettings,
    instances: InstanceConfig[],
    destinations: DestinationMap,
  ) {
    super();
    this.destinations = destinations;
    for (const i of instances) this.addInstance(i);
  }

  // ---- administration ----

  addInstance(config: InstanceConfig): InstanceInfo {
    if (!isInstanceId(config.instanceId)) throw new Error(`not an instance id: ${config.instanceId}`);
    const now = new Date();
    this.instances.set(config.instanceId, {
      instanceId: config.instanceId,
      tags: { ...(config.tags ?? {}) },
      online: config.online ?? true,
      agentVersion: config.agentVersion ?? this.settings.agentVersion,
      account: config.account ?? this.settings.defaultAccount,
      registeredAt: now,
      lastPingAt: now,
    });
    return this.instanceInfo(config.instanceId)!;
  }

  instanceInfo(instanceId: string): InstanceInfo | undefined {
    const i = this.instances.get(instanceId);
    if (!i) return undefined;
    return { ...i, tags: { ...i.tags }, pingStatus: i.online ? "Online" : "ConnectionLost", faults: { ...this.instanceFaults.get(instanceId) } };
  }

  listInstances(): InstanceInfo[] {
    return [...this.instances.keys()].map((id) => this.instanceInfo(id)!);
  }

  /** Offline: new sessions get TargetNotConnected and open ones carry nothing until it is back. */
  setInstanceOnline(instanceId: string, online: boolean): void {
    const i = this.requireInstance(instanceId);
    if (online && !i.online) i.lastPingAt = new Date();
    i.online = online;
    this.kickInstanceSessions(instanceId);
  }

  setInstanceFaults(instanceId: string, patch: FaultSettings | null): void {
    this.requireInstance(instanceId);
    if (patch === null) this.instanceFaults.delete(instanceId);
    else this.instanceFaults.set(instanceId, { ...this.instanceFaults.get(instanceId), ...patch });
    this.kickInstanceSessions(instanceId);
  }

  /** How long StartSession on `target` is held before it is answered (the instance's startSessionDelayMs fault). */
  startSessionDelayMs(target: unknown): number {
    return typeof target === "string" ? (this.instanceFaults.get(target)?.startSessionDelayMs ?? 0) : 0;
  }

  getSession(sessionId: string): AgentSession | undefined {
    return this.sessions.get(sessionId);
  }

  requireSession(sessionId: string): AgentSession {
    const s = this.sessions.get(sessionId);
    if (!s) throw new Error(`no session ${sessionId}`);
    return s;
  }

  listSessions(filter: { active?: boolean } = {}): SessionInfo[] {
    const all = [...this.sessions.values()].map((s) => s.info());
    return filter.active ? all.filter((s) => s.state !== "Terminated") : all;
  }

  terminateAll(reason: string): void {
    for (const s of this.sessions.values()) s.terminate(undefined, reason);
  }

  // ---- operations ----

  startSession(input: Json, caller: Caller): Json {
    const target = input["Target"];
    if (target === undefined || target === null) {
      throw awsErrors.validation("1 validation error detected: Value null at 'target' failed to satisfy constraint: Member must not be null");
    }
    if (typeof target !== "string" || target.length < 1 || target.length > 400) {
      throw awsErrors.validation("1 validation error detected: Value at 'target' failed to satisfy constraint: Member must have length between 1 and 400");
    }
    const documentName = input["DocumentName"];
    if (documentName !== undefined && (typeof documentName !== "string" || !/^[a-zA-Z0-9_\-.:/]{3,128}$/.test(documentName))) {
      throw awsErrors.validation(
        "1 validation error detected: Value at 'documentName' failed to satisfy constraint: Member must satisfy regular expression pattern: ^[a-zA-Z0-9_\\-.:/]{3,128}$",
      );
    }
    const instance = this.instances.get(target);
    // Another account's instance is, to this caller, not there at all.
    if (!instance || !instance.online || instance.account !== caller.account) throw awsErrors.targetNotConnected(target);
    if (documentName === undefined) {
      throw awsErrors.invalidDocument("The emulator serves port forwarding only: name AWS-StartPortForwardingSessionToRemoteHost or AWS-StartPortForwardingSession.");
    }
    if (!(documentName in PORT_DOCUMENTS)) throw awsErrors.invalidDocument(`Document with name ${documentName} does not exist.`);
    const properties = this.validateParameters(documentName as PortDocumentName, input["Parameters"]);
    const host = properties.host ?? "localhost";
    const destination = this.destinations.resolve(host, Number(properties.portNumber));
    const sessionId = `rdsd-emulator-${randomBytes(9).toString("hex").slice(0, 17)}`;
    const token = randomBytes(120).toString("base64url");
    const instanceId = target;
    const session = new AgentSession({ account: caller.account, accessKeyId: caller.accessKeyId }, sessionId, instanceId, documentName, properties, destination, token, {
      agentVersion: instance.agentVersion,
      pacing: this.settings.pacing,
      handshakeTimeoutMs: this.settings.handshakeTimeoutMs,
      instanceFaults: () => this.instanceFaults.get(instanceId) ?? {},
      instanceOnline: () => this.instances.get(instanceId)?.online ?? false,
      log: this.settings.log,
      onEnded: (info) => this.emit("session-ended", info),
    });
    this.sessions.set(sessionId, session);
    this.emit("session-started", session.info());
    return { SessionId: sessionId, TokenValue: token, StreamUrl: this.settings.streamUrl(sessionId) };
  }

  resumeSession(input: Json, caller: Caller): Json {
    const sessionId = this.requireSessionIdInput(input);
    const session = this.ownSession(sessionId, caller);
    if (!session) throw awsErrors.doesNotExist(`Session ${sessionId} does not exist.`);
    // A session that is over gets no token: the official client reads that as "timed out".
    if (session.isTerminated) return { SessionId: sessionId };
    const token = randomBytes(120).toString("base64url");
    session.renewToken(token);
    return { SessionId: sessionId, TokenValue: token, StreamUrl: this.settings.streamUrl(sessionId) };
  }

  terminateSession(input: Json, caller: Caller): Json {
    const sessionId = this.requireSessionIdInput(input);
    this.ownSession(sessionId, caller)?.terminate(CLOSE_ON_TERMINATE, "terminated by TerminateSession");
    return { SessionId: sessionId };
  }

  describeInstanceInformation(input: Json, caller: Caller): Json {
    let list = this.listInstances().filter((i) => i.account === caller.account);
    const maxResults = input["MaxResults"];
    if (maxResults !== undefined && (typeof maxResults !== "number" || maxResults < 5 || maxResults > 50)) {
      throw awsErrors.validation("1 validation error detected: Value at 'maxResults' failed to satisfy constraint: Member must have value between 5 and 50");
    }
    const filterList = input["InstanceInformationFilterList"];
    if (filterList !== undefined) {
      if (!Array.isArray(filterList)) throw awsErrors.serialization("InstanceInformationFilterList must be a list");
      for (const f of filterList as Json[]) {
        list = applyFilter(list, String(f["key"]), f["valueSet"], false);
      }
    }
    const filters = input["Filters"];
    if (filters !== undefined) {
      if (!Array.isArray(filters)) throw awsErrors.serialization("Filters must be a list");
      for (const f of filters as Json[]) list = applyFilter(list, String(f["Key"]), f["Values"], true);
    }
    const start = decodeNextToken(input["NextToken"]);
    const pageSize = typeof maxResults === "number" ? maxResults : 50;
    const page = list.slice(start, start + pageSize);
    const out: Json = {
      InstanceInformationList: page.map((i) => ({
        InstanceId: i.instanceId,
        PingStatus: i.pingStatus,
        LastPingDateTime: i.lastPingAt.getTime() / 1000,
        AgentVersion: i.agentVersion,
        IsLatestVersion: true,
        PlatformType: "Linux",
        PlatformName: "Amazon Linux",
        PlatformVersion: "2023",
        ResourceType: "EC2Instance",
        ComputerName: `${i.instanceId}.emulator.internal`,
        AssociationStatus: "Success",
        RegistrationDate: i.registeredAt.getTime() / 1000,
      })),
    };
    if (start + pageSize < list.length) out["NextToken"] = Buffer.from(String(start + pageSize)).toString("base64");
    return out;
  }

  /** Sessions live in the account that started them: another account's session is, to this caller, not there. */
  private ownSession(sessionId: string, caller: Caller): AgentSession | undefined {
    const session = this.sessions.get(sessionId);
    return session?.owner.account === caller.account ? session : undefined;
  }

  private requireSessionIdInput(input: Json): string {
    const id = input["SessionId"];
    if (typeof id !== "string" || id.length < 1 || id.length > 96) {
      throw awsErrors.validation("1 validation error detected: Value null at 'sessionId' failed to satisfy constraint: Member must not be null");
    }
    return id;
  }

  private requireInstance(instanceId: string): InstanceState {
    const i = this.instances.get(instanceId);
    if (!i) throw new Error(`no instance ${instanceId}`);
    return i;
  }

  private kickInstanceSessions(instanceId: string): void {
    for (const s of this.sessions.values()) if (s.instanceId === instanceId) s.kick();
  }

  /** Validates Parameters against the document, as the service does, and fills defaults. */
  private validateParameters(document: PortDocumentName, raw: unknown): PortSessionProperties {
    const params: Record<string, string> = {};
    if (raw !== undefined && raw !== null) {
      if (typeof raw !== "object" || Array.isArray(raw)) throw awsErrors.serialization("Parameters must be a map of string lists");
      for (const [name, values] of Object.entries(raw as Record<string, unknown>)) {
        if (!Array.isArray(values) || values.some((v) => typeof v !== "string")) {
          throw awsErrors.serialization(`Parameters.${name} must be a list of strings`);
        }
        const allowed = PORT_DOCUMENTS[document].requiresHost ? ["host", "portNumber", "localPortNumber"] : ["portNumber", "localPortNumber"];
        if (!allowed.includes(name)) throw awsErrors.invalidParameters(`Parameter "${name}" is not defined in document ${document}.`);
        if (values.length !== 1) throw awsErrors.invalidParameters(`Parameter "${name}" takes exactly one value.`);
        params[name] = values[0] as string;
      }
    }
    const portNumber = params["portNumber"] ?? "80";
    const localPortNumber = params["localPortNumber"] ?? "0";
    if (!isPort(portNumber, 1)) throw awsErrors.invalidParameters(`Parameter "portNumber" must be a port number 1-65535, got "${portNumber}".`);
    if (!isPort(localPortNumber, 0)) {
      throw awsErrors.invalidParameters(`Parameter "localPortNumber" must be a port number 0-65535, got "${localPortNumber}".`);
    }
    if (PORT_DOCUMENTS[document].requiresHost) {
      const host = params["host"];
      if (host === undefined || host === "") throw awsErrors.invalidParameters(`Parameter "host" is required by document ${document}.`);
      if (!/^[A-Za-z0-9.\-:[\]]{1,253}$/.test(host)) throw awsErrors.invalidParameters(`Parameter "host" is not a valid host name.`);
      return { portNumber, type: "LocalPortForwarding", host, localPortNumber };
    }
    return { portNumber, type: "LocalPortForwarding", localPortNumber };
  }
}

/** What the client sees when its session is ended by TerminateSession. */
const CLOSE_ON_TERMINATE = "";

function isPort(text: string, min: number): boolean {
  if (!/^\d{1,5}$/.test(text)) return false;
  const n = Number(text);
  return n >= min && n <= 65535;
}

function decodeNextToken(token: unknown): number {
  if (token === undefined || token === null || token === "") return 0;
  if (typeof token !== "string") throw awsErrors.invalidNextToken();
  const n = Number(Buffer.from(token, "base64").toString("utf8"));
  if (!Number.isInteger(n) || n < 0) throw awsErrors.invalidNextToken();
  return n;
}

const FILTER_KEYS = ["InstanceIds", "AgentVersion", "PingStatus", "PlatformTypes", "ResourceType"];

function applyFilter(list: InstanceInfo[], key: string, rawValues: unknown, stringFilter: boolean): InstanceInfo[] {
  if (!Array.isArray(rawValues) || rawValues.length === 0 || rawValues.some((v) => typeof v !== "string")) {
    throw awsErrors.invalidFilterValue(`The filter values for ${key} are not valid.`);
  }
  const values = rawValues as string[];
  if (stringFilter && key.startsWith("tag:")) {
    const tagKey = key.slice(4);
    return list.filter((i) => i.tags[tagKey] !== undefined && values.includes(i.tags[tagKey]!));
  }
  if (stringFilter && key === "tag-key") return list.filter((i) => values.some((v) => i.tags[v] !== undefined));
  if (!FILTER_KEYS.includes(key)) throw awsErrors.invalidFilterKey();
  switch (key) {
    case "InstanceIds":
      for (const v of values) if (!isInstanceId(v)) throw awsErrors.invalidInstanceId(`Instance ${v} is not a valid instance id.`);
      return list.filter((i) => values.includes(i.instanceId));
    case "AgentVersion":
      return list.filter((i) => values.includes(i.agentVersion));
    case "PingStatus":
      return list.filter((i) => values.includes(i.pingStatus));
    case "PlatformTypes":
      return list.filter(() => values.includes("Linux"));
    default:
      return list.filter(() => values.includes("EC2Instance"));
  }
}
