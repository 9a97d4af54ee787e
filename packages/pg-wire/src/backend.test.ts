import { describe, expect, it } from "vitest";
import {
  buildErrorResponse,
  buildNegotiateProtocolVersion,
  decodeAuthenticationRequest,
  decodeBackendKeyData,
  decodeErrorFields,
  errorFieldBytes,
  frame,
  withErrorHint,
  readBackendFrame,
} from "./backend.js";

describe("backend messages", () => {
  it("builds an ErrorResponse with the documented layout", () => {
    const msg = buildErrorResponse({ severity: "FATAL", code: "28000", message: "no", hint: "fix it" });
    const body = "SFATAL\0VFATAL\0C28000\0Mno\0Hfix it\0\0";
    expect(msg).toEqual(Buffer.concat([Buffer.from("E"), Buffer.from([0, 0, 0, 4 + body.length]), Buffer.from(body)]));
    const frame = readBackendFrame(msg);
    if (frame.status !== "ok") throw new Error("frame");
    expect(decodeErrorFields(frame.frame.body)).toEqual({ severity: "FATAL", code: "28000", message: "no", hint: "fix it" });
  });

  it("drops NUL bytes inside fields instead of truncating the message", () => {
    const frame = readBackendFrame(buildErrorResponse({ severity: "FATAL", code: "08P01", message: "a\0b" }));
    if (frame.status !== "ok") throw new Error("frame");
    expect(decodeErrorFields(frame.frame.body).message).toBe("ab");
  });

  it("builds NegotiateProtocolVersion", () => {
    expect(buildNegotiateProtocolVersion(0, ["_pq_.x"])).toEqual(
      Buffer.concat([Buffer.from("v"), Buffer.from("0000001300030000 00000001".replace(/ /g, ""), "hex"), Buffer.from("_pq_.x\0")]),
    );
  });

  it("frames messages and reports incomplete or absurd ones", () => {
    const two = Buffer.from("5200000008000000035a0000000549", "hex");
    const first = readBackendFrame(two);
    expect(first).toMatchObject({ status: "ok", length: 9, frame: { type: "R" } });
    expect(readBackendFrame(two.subarray(9))).toMatchObject({ status: "ok", length: 6, frame: { type: "Z" } });
    expect(readBackendFrame(two.subarray(0, 8)).status).toBe("incomplete");
    expect(readBackendFrame(Buffer.from("52ffffffff", "hex")).status).toBe("invalid");
    expect(readBackendFrame(Buffer.from("5200000003", "hex")).status).toBe("invalid");
  });

  it("decodes every authentication request the proxy handles", () => {
    expect(decodeAuthenticationRequest(Buffer.from("00000000", "hex"))).toEqual({ kind: "ok" });
    expect(decodeAuthenticationRequest(Buffer.from("00000003", "hex"))).toEqual({ kind: "cleartext-password" });
    expect(decodeAuthenticationRequest(Buffer.from("0000000501020304", "hex"))).toEqual({ kind: "md5-password", salt: Buffer.from([1, 2, 3, 4]) });
    expect(decodeAuthenticationRequest(Buffer.concat([Buffer.from("0000000a", "hex"), Buffer.from("SCRAM-SHA-256-PLUS\0SCRAM-SHA-256\0\0")]))).toEqual({
      kind: "sasl",
      mechanisms: ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"],
    });
    expect(decodeAuthenticationRequest(Buffer.concat([Buffer.from("0000000b", "hex"), Buffer.from("r=abc")]))).toEqual({ kind: "sasl-continue", data: Buffer.from("r=abc") });
    expect(decodeAuthenticationRequest(Buffer.from("00000007", "hex"))).toEqual({ kind: "unsupported", code: 7, name: "GSSAPI" });
    expect(typeof decodeAuthenticationRequest(Buffer.from("0000", "hex"))).toBe("string");
    expect(typeof decodeAuthenticationRequest(Buffer.from("0000000501", "hex"))).toBe("string");
  });

  it("decodes BackendKeyData with 4-byte and 32-byte keys", () => {
    expect(decodeBackendKeyData(Buffer.from("00000064deadbeef", "hex"))).toEqual({ processId: 100, secretKey: Buffer.from("deadbeef", "hex") });
    const long = Buffer.concat([Buffer.from("00000001", "hex"), Buffer.alloc(32, 9)]);
    expect(decodeBackendKeyData(long)).toEqual({ processId: 1, secretKey: Buffer.alloc(32, 9) });
  });
});

describe("withErrorHint", () => {
  /** An ErrorResponse with the given raw fields, in order. */
  const errorMessage = (fields: Array<[string, string]>) => frame("E", Buffer.concat([...fields.map(([c, v]) => Buffer.from(`${c}${v}\0`, "utf8")), Buffer.from([0])]));

  it("adds a hint field to an error without one, keeping every other field's bytes and order", () => {
    const original = errorMessage([["S", "ERROR"], ["V", "ERROR"], ["C", "25006"], ["M", "cannot execute CREATE TABLE in a read-only transaction"], ["F", "utility.c"], ["L", "414"], ["R", "PreventCommandIfReadOnly"]]);
    const hinted = withErrorHint(original, "target billing-prod is read-only in rdsd's config")!;
    expect(hinted.readUInt32BE(1)).toBe(hinted.length - 1);
    expect(hinted.subarray(0, 1).toString()).toBe("E");
    expect(decodeErrorFields(hinted.subarray(5))).toEqual({ severity: "ERROR", code: "25006", message: "cannot execute CREATE TABLE in a read-only transaction", hint: "target billing-prod is read-only in rdsd's config" });
    expect(errorFieldBytes(hinted.subarray(5), "R")?.toString()).toBe("PreventCommandIfReadOnly");
    expect(hinted.subarray(5, original.length - 1)).toEqual(original.subarray(5, original.length - 1));
  });

  it("appends to an existing hint on a new line", () => {
    const hinted = withErrorHint(errorMessage([["S", "ERROR"], ["C", "25006"], ["M", "m"], ["H", "server hint"]]), "ours")!;
    expect(decodeErrorFields(hinted.subarray(5)).hint).toBe("server hint\nours");
  });

  it("refuses a body that is not a terminated field list", () => {
    expect(withErrorHint(frame("E", Buffer.from("SERROR\0Cunterminated")), "x")).toBeUndefined();
    expect(withErrorHint(frame("E", Buffer.from("SERROR\0\0trailing")), "x")).toBeUndefined();
    expect(errorFieldBytes(Buffer.from("SERROR\0C25006\0\0"), "C")?.toString()).toBe("25006");
    expect(errorFieldBytes(Buffer.from("SERROR\0\0"), "C")).toBeUndefined();
  });
});
