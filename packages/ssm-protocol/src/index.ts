export {
  ClientMessageError,
  decodeClientMessage,
  encodeClientMessage,
  HEADER_LENGTH,
  MESSAGE_TYPE_LENGTH,
  MessageFlags,
  MessageType,
  PAYLOAD_OFFSET,
  PayloadType,
  sha256,
} from "./client-message.js";
export type { ClientMessage, ClientMessageFields, DecodeOptions, KnownMessageType } from "./client-message.js";
export { isUuid, randomUuid, uuidFromWire, uuidToWire } from "./uuid.js";
export {
  ActionStatus,
  decodeAcknowledgeContent,
  decodeChannelClosedPayload,
  decodeFlag,
  decodeHandshakeComplete,
  decodeHandshakeRequest,
  decodeHandshakeResponse,
  decodeOpenDataChannel,
  encodeAcknowledgeContent,
  encodeAcknowledgeMessage,
  encodeChannelClosedMessage,
  encodeChannelClosedPayload,
  encodeFlag,
  encodeHandshakeComplete,
  encodeHandshakeRequest,
  encodeHandshakeResponse,
  encodeOpenDataChannel,
  FlagValue,
  sessionTypeOf,
} from "./payloads.js";
export type {
  AcknowledgeContent,
  ChannelClosedPayload,
  HandshakeCompletePayload,
  HandshakeRequestPayload,
  HandshakeResponsePayload,
  OpenDataChannelRequest,
  PortSessionProperties,
  ProcessedClientAction,
  RequestedClientAction,
} from "./payloads.js";
export {
  agentSupportsKeepAliveOff,
  agentSupportsMultiplexing,
  agentSupportsTerminateSessionFlag,
  clientSupportsKeepAliveOff,
  clientSupportsMultiplexing,
  compareVersions,
} from "./version.js";
export {
  encodeSmuxFrame,
  SMUX_DEFAULT_MAX_FRAME_SIZE,
  SMUX_HEADER_LENGTH,
  SMUX_MAX_FRAME_DATA,
  SMUX_VERSION,
  SmuxCommand,
  SmuxFrameDecoder,
  SmuxProtocolError,
} from "./smux-frame.js";
export type { SmuxCommandValue, SmuxFrame } from "./smux-frame.js";
export { SmuxSession, SmuxSessionClosedError, SmuxStream } from "./smux-session.js";
export type { SmuxKeepAlive, SmuxSessionOptions } from "./smux-session.js";
export { ReliableChannel, RESEND_CHECK_INTERVAL_MS, STREAM_DATA_PAYLOAD_SIZE } from "./reliable-channel.js";
export type { ReceiveResult, ReliableChannelOptions } from "./reliable-channel.js";
