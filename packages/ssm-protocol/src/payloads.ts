import { ClientMessageError, encodeClientMessage, MessageFlags, MessageType, PayloadType } from "./client-message.js";
import type { ClientMessage } from "./client-message.js";
import { isUuid, randomUuid } from "./uuid.js";

// JSON payloads of the data channel. Field names are the wire names (PascalCase) on purpose.

function parseJsonObject(bytes: Uint8Array | string, what: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(typeof bytes === "string" ? bytes : Buffer.from(bytes).toString("utf8"));
  } catch {
    throw new ClientMessageError(`${what}: not JSON`);
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new ClientMessageError(`${what}: not a JSON object`);
  }
  return value as Record<string, unknown>;
}

function requireString(obj: Record<string, unknown>, key: string, what: string): string {
  const v = obj[key];
  if (typeof v !== "string") throw new ClientMessageError(`${what}: ${key} must be a string`);
  return v;
}

function jsonBytes(value: unknown): Buffer {
  return Buffer.from(JSON.stringify(value), "utf8");
}

// ---- acknowledge ----

export interface AcknowledgeContent {
  AcknowledgedMessageType: string;
  AcknowledgedMessageId: string;
  AcknowledgedMessageSequenceNumber: number;
  IsSequentialMessage: boolean;
}

export function encodeAcknowledgeContent(content: AcknowledgeContent): Buffer {
  return jsonBytes({
    AcknowledgedMessageType: content.AcknowledgedMessageType,
    AcknowledgedMessageId: content.AcknowledgedMessageId,
    AcknowledgedMessageSequenceNumber: content.AcknowledgedMessageSequenceNumber,
    IsSequentialMessage: content.IsSequentialMessage,
  });
}

export function decodeAcknowledgeContent(payload: Uint8Array): AcknowledgeContent {
  const what = "acknowledge payload";
  const obj = parseJsonObject(payload, what);
  const seq = obj["AcknowledgedMessageSequenceNumber"];
  if (typeof seq !== "number" || !Number.isSafeInteger(seq)) {
    throw new ClientMessageError(`${what}: AcknowledgedMessageSequenceNumber must be an integer`);
  }
  return {
    AcknowledgedMessageType: requireString(obj, "AcknowledgedMessageType", what),
    AcknowledgedMessageId: requireString(obj, "AcknowledgedMessageId", what),
    AcknowledgedMessageSequenceNumber: seq,
    IsSequentialMessage: obj["IsSequentialMessage"] === true,
  };
}

/** The full `acknowledge` message (sequence 0, flags 3, payload type 0) for a received stream message. */
export function encodeAcknowledgeMessage(
  acked: Pick<ClientMessage, "messageType" | "messageId" | "sequenceNumber">,
  now: number,
  messageId: string = randomUuid(),
): Buffer {
  return encodeClientMessage({
    messageType: MessageType.Acknowledge,
    createdDate: now,
    sequenceNumber: 0,
    flags: MessageFlags.Acknowledge,
    messageId,
    payloadType: PayloadType.None,
    payload: encodeAcknowledgeContent({
      AcknowledgedMessageType: acked.messageType,
      AcknowledgedMessageId: acked.messageId,
      AcknowledgedMessageSequenceNumber: acked.sequenceNumber,
      IsSequentialMessage: true,
    }),
  });
}

// ---- handshake ----

export interface RequestedClientAction {
  ActionType: string;
  ActionParameters: unknown;
}

export interface HandshakeRequestPayload {
  AgentVersion: string;
  RequestedClientActions: RequestedClientAction[];
}

/** ActionStatus in a HandshakeResponse. */
export const ActionStatus = { Success: 1, Failed: 2, Unsupported: 3 } as const;

export interface ProcessedClientAction {
  ActionType: string;
  ActionStatus: number;
  ActionResult: unknown;
  Error: string;
}

export interface HandshakeResponsePayload {
  ClientVersion: string;
  ProcessedClientActions: ProcessedClientAction[];
  Errors: string[] | null;
}

export interface HandshakeCompletePayload {
  /** Nanoseconds, as the agent's Go time.Duration marshals. */
  HandshakeTimeToComplete: number;
  CustomerMessage: string;
}

/** Properties of the SessionType action for port sessions (the document's parameters). */
export interface PortSessionProperties {
  portNumber: string;
  type?: string;
  host?: string;
  localPortNumber?: string;
  [key: string]: unknown;
}

export function encodeHandshakeRequest(payload: HandshakeRequestPayload): Buffer {
  return jsonBytes(payload);
}

export function decodeHandshakeRequest(bytes: Uint8Array): HandshakeRequestPayload {
  const what = "HandshakeRequest";
  const obj = parseJsonObject(bytes, what);
  const actions = obj["RequestedClientActions"];
  if (!Array.isArray(actions)) throw new ClientMessageError(`${what}: RequestedClientActions must be an array`);
  return {
    AgentVersion: requireString(obj, "AgentVersion", what),
    RequestedClientActions: actions.map((a: unknown) => {
      if (typeof a !== "object" || a === null) throw new ClientMessageError(`${what}: bad action`);
      const action = a as Record<string, unknown>;
      return { ActionType: requireString(action, "ActionType", what), ActionParameters: action["ActionParameters"] };
    }),
  };
}

/** The SessionType action's parameters, when the request carries one. */
export function sessionTypeOf(request: HandshakeRequestPayload): { SessionType: string; Properties: unknown } | undefined {
  for (const action of request.RequestedClientActions) {
    if (action.ActionType !== "SessionType") continue;
    const params = action.ActionParameters as Record<string, unknown> | null;
    if (params && typeof params["SessionType"] === "string") {
      return { SessionType: params["SessionType"], Properties: params["Properties"] };
    }
  }
  return undefined;
}

export function encodeHandshakeResponse(payload: HandshakeResponsePayload): Buffer {
  return jsonBytes(payload);
}

export function decodeHandshakeResponse(bytes: Uint8Array): HandshakeResponsePayload {
  const what = "HandshakeResponse";
  const obj = parseJsonObject(bytes, what);
  const actions = obj["ProcessedClientActions"];
  if (!Array.isArray(actions)) throw new ClientMessageError(`${what}: ProcessedClientActions must be an array`);
  const errors = obj["Errors"];
  return {
    ClientVersion: requireString(obj, "ClientVersion", what),
    ProcessedClientActions: actions.map((a: unknown) => {
      if (typeof a !== "object" || a === null) throw new ClientMessageError(`${what}: bad action`);
      const action = a as Record<string, unknown>;
      const status = action["ActionStatus"];
      return {
        ActionType: requireString(action, "ActionType", what),
        ActionStatus: typeof status === "number" ? status : 0,
        ActionResult: action["ActionResult"] ?? null,
        Error: typeof action["Error"] === "string" ? action["Error"] : "",
      };
    }),
    Errors: Array.isArray(errors) ? errors.map(String) : null,
  };
}

export function encodeHandshakeComplete(payload: HandshakeCompletePayload): Buffer {
  return jsonBytes(payload);
}

export function decodeHandshakeComplete(bytes: Uint8Array): HandshakeCompletePayload {
  const what = "HandshakeComplete";
  const obj = parseJsonObject(bytes, what);
  const t = obj["HandshakeTimeToComplete"];
  return {
    HandshakeTimeToComplete: typeof t === "number" ? t : 0,
    CustomerMessage: typeof obj["CustomerMessage"] === "string" ? obj["CustomerMessage"] : "",
  };
}

// ---- flags ----

/** Flag payload values (4-byte big-endian). */
export const FlagValue = {
  DisconnectToPort: 1,
  TerminateSession: 2,
  ConnectToPortError: 3,
} as const;

export function encodeFlag(flag: number): Buffer {
  const out = Buffer.allocUnsafe(4);
  out.writeUInt32BE(flag >>> 0, 0);
  return out;
}

export function decodeFlag(payload: Uint8Array): number {
  if (payload.length !== 4) throw new ClientMessageError(`Flag payload must be 4 bytes, got ${payload.length}`);
  return Buffer.from(payload.buffer, payload.byteOffset, 4).readUInt32BE(0);
}

// ---- channel_closed ----

export interface ChannelClosedPayload {
  MessageId: string;
  /** ISO-8601 time. */
  CreatedDate: string;
  DestinationId: string;
  SessionId: string;
  MessageType: "channel_closed";
  SchemaVersion: number;
  /** The reason shown to the user; empty for a plain close. */
  Output: string;
}

export function encodeChannelClosedPayload(payload: ChannelClosedPayload): Buffer {
  return jsonBytes(payload);
}

export function decodeChannelClosedPayload(bytes: Uint8Array): ChannelClosedPayload {
  const what = "channel_closed payload";
  const obj = parseJsonObject(bytes, what);
  return {
    MessageId: typeof obj["MessageId"] === "string" ? obj["MessageId"] : "",
    CreatedDate: typeof obj["CreatedDate"] === "string" ? obj["CreatedDate"] : "",
    DestinationId: typeof obj["DestinationId"] === "string" ? obj["DestinationId"] : "",
    SessionId: requireString(obj, "SessionId", what),
    MessageType: "channel_closed",
    SchemaVersion: typeof obj["SchemaVersion"] === "number" ? obj["SchemaVersion"] : 1,
    Output: typeof obj["Output"] === "string" ? obj["Output"] : "",
  };
}

/** The full `channel_closed` message the service sends when a session ends. */
export function encodeChannelClosedMessage(
  info: { sessionId: string; destinationId: string; output: string },
  now: number,
  messageId: string = randomUuid(),
): Buffer {
  return encodeClientMessage({
    messageType: MessageType.ChannelClosed,
    createdDate: now,
    sequenceNumber: 0,
    flags: MessageFlags.Data,
    messageId,
    payloadType: PayloadType.None,
    payload: encodeChannelClosedPayload({
      MessageId: messageId,
      CreatedDate: new Date(now).toISOString(),
      DestinationId: info.destinationId,
      SessionId: info.sessionId,
      MessageType: "channel_closed",
      SchemaVersion: 1,
      Output: info.output,
    }),
  });
}

// ---- OpenDataChannel (the first, text, websocket frame) ----

export interface OpenDataChannelRequest {
  MessageSchemaVersion: string;
  RequestId: string;
  TokenValue: string;
  ClientId: string;
  ClientVersion: string;
}

export function encodeOpenDataChannel(request: OpenDataChannelRequest): string {
  return JSON.stringify({
    MessageSchemaVersion: request.MessageSchemaVersion,
    RequestId: request.RequestId,
    TokenValue: request.TokenValue,
    ClientId: request.ClientId,
    ClientVersion: request.ClientVersion,
  });
}

/** Parses the OpenDataChannel frame. Errors never echo the token. */
export function decodeOpenDataChannel(text: string | Uint8Array): OpenDataChannelRequest {
  const what = "OpenDataChannel";
  const obj = parseJsonObject(text, what);
  const request: OpenDataChannelRequest = {
    MessageSchemaVersion: requireString(obj, "MessageSchemaVersion", what),
    RequestId: requireString(obj, "RequestId", what),
    TokenValue: requireString(obj, "TokenValue", what),
    ClientId: requireString(obj, "ClientId", what),
    ClientVersion: typeof obj["ClientVersion"] === "string" ? obj["ClientVersion"] : "",
  };
  if (!isUuid(request.ClientId)) throw new ClientMessageError(`${what}: ClientId must be a UUID`);
  return request;
}
