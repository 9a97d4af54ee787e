import { describe, expect, it } from "vitest";
import { decodeClientMessage, MessageType } from "./client-message.js";
import {
  decodeAcknowledgeContent,
  decodeChannelClosedPayload,
  decodeFlag,
  decodeHandshakeRequest,
  decodeHandshakeResponse,
  decodeOpenDataChannel,
  encodeAcknowledgeMessage,
  encodeChannelClosedMessage,
  encodeFlag,
  encodeHandshakeRequest,
  encodeOpenDataChannel,
  FlagValue,
  sessionTypeOf,
} from "./payloads.js";

const ID = "00112233-4455-6677-8899-aabbccddeeff";

describe("payloads", () => {
  it("builds the acknowledge message the documented way", () => {
    const bytes = encodeAcknowledgeMessage(
      { messageType: "output_stream_data", messageId: ID, sequenceNumber: 4 },
      1000,
      "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee",
    );
    const msg = decodeClientMessage(bytes);
    expect(msg).toMatchObject({ messageType: "acknowledge", sequenceNumber: 0, flags: 3, payloadType: 0 });
    expect(msg.payload.toString()).toBe(
      `{"AcknowledgedMessageType":"output_stream_data","AcknowledgedMessageId":"${ID}","AcknowledgedMessageSequenceNumber":4,"IsSequentialMessage":true}`,
    );
    expect(decodeAcknowledgeContent(msg.payload).AcknowledgedMessageSequenceNumber).toBe(4);
    expect(() => decodeAcknowledgeContent(Buffer.from('{"AcknowledgedMessageSequenceNumber":"4"}'))).toThrow(/integer/);
    expect(() => decodeAcknowledgeContent(Buffer.from("not json"))).toThrow(/not JSON/);
  });

  it("encodes flags as 4 big-endian bytes", () => {
    expect(encodeFlag(FlagValue.ConnectToPortError).toString("hex")).toBe("00000003");
    expect(decodeFlag(Buffer.from("00000001", "hex"))).toBe(FlagValue.DisconnectToPort);
    expect(() => decodeFlag(Buffer.from("01", "hex"))).toThrow(/4 bytes/);
  });

  it("round-trips the handshake request and finds the port session properties", () => {
    const payload = encodeHandshakeRequest({
      AgentVersion: "3.3.1802.0",
      RequestedClientActions: [
        {
          ActionType: "SessionType",
          ActionParameters: { SessionType: "Port", Properties: { portNumber: "5432", type: "LocalPortForwarding" } },
        },
      ],
    });
    const request = decodeHandshakeRequest(payload);
    expect(sessionTypeOf(request)).toEqual({ SessionType: "Port", Properties: { portNumber: "5432", type: "LocalPortForwarding" } });
  });

  it("parses the handshake response the official client sends", () => {
    const seen = '{"ClientVersion":"1.2.764.0","ProcessedClientActions":[{"ActionType":"SessionType","ActionStatus":1,"ActionResult":null,"Error":""}],"Errors":null}';
    expect(decodeHandshakeResponse(Buffer.from(seen))).toEqual({
      ClientVersion: "1.2.764.0",
      ProcessedClientActions: [{ ActionType: "SessionType", ActionStatus: 1, ActionResult: null, Error: "" }],
      Errors: null,
    });
  });

  it("builds channel_closed with the session and reason", () => {
    const bytes = encodeChannelClosedMessage({ sessionId: "s-1", destinationId: "i-1", output: "bye" }, 5000, ID);
    const msg = decodeClientMessage(bytes);
    expect(msg.messageType).toBe(MessageType.ChannelClosed);
    expect(decodeChannelClosedPayload(msg.payload)).toMatchObject({ SessionId: "s-1", Output: "bye", MessageId: ID });
  });

  it("parses OpenDataChannel and never echoes the token in errors", () => {
    const text = encodeOpenDataChannel({
      MessageSchemaVersion: "1.0",
      RequestId: ID,
      TokenValue: "SECRET-TOKEN",
      ClientId: ID,
      ClientVersion: "1.2.764.0",
    });
    expect(decodeOpenDataChannel(text).TokenValue).toBe("SECRET-TOKEN");
    const bad = text.replace(`"ClientId":"${ID}"`, '"ClientId":"me"');
    expect(() => decodeOpenDataChannel(bad)).toThrow(/ClientId/);
    try {
      decodeOpenDataChannel(bad);
    } catch (err) {
      expect(String(err)).not.toContain("SECRET-TOKEN");
    }
    expect(() => decodeOpenDataChannel("{}")).toThrow(/MessageSchemaVersion/);
  });
});
