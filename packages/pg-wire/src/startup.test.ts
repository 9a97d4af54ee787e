import { describe, expect, it } from "vitest";
import { appendOptions, buildSslRequest, buildStartupMessage, escapeOptionWord, parseFirstPacket, settingOptions, startupParameter, textParameter } from "./startup.js";

function hex(text: string): Buffer {
  return Buffer.from(text.replace(/\s+/g, ""), "hex");
}

describe("parseFirstPacket", () => {
  it("recognizes SSLRequest, GSSENCRequest from their documented bytes", () => {
    expect(parseFirstPacket(hex("00000008 04d2162f"))).toEqual({ status: "ok", length: 8, packet: { kind: "ssl-request" } });
    expect(parseFirstPacket(hex("00000008 04d21630"))).toEqual({ status: "ok", length: 8, packet: { kind: "gssenc-request" } });
    expect(buildSslRequest()).toEqual(hex("00000008 04d2162f"));
  });

  it("reads a protocol 3.0 CancelRequest (16 bytes) and a 3.2 one with a 32-byte key", () => {
    const v30 = hex("00000010 04d2162e 00003039 deadbeef");
    const r = parseFirstPacket(v30);
    expect(r).toMatchObject({ status: "ok", length: 16, packet: { kind: "cancel", processId: 12345 } });
    if (r.status === "ok" && r.packet.kind === "cancel") {
      expect(r.packet.secretKey).toEqual(hex("deadbeef"));
      expect(r.packet.raw).toEqual(v30);
    }
    const key = Buffer.alloc(32, 0xab);
    const v32 = Buffer.concat([hex("0000002c 04d2162e 00000007"), key]);
    const r32 = parseFirstPacket(v32);
    expect(r32).toMatchObject({ status: "ok", length: 44, packet: { kind: "cancel", processId: 7 } });
    if (r32.status === "ok" && r32.packet.kind === "cancel") expect(r32.packet.secretKey).toEqual(key);
  });

  it("refuses cancel keys shorter than 4 or longer than 256 bytes", () => {
    expect(parseFirstPacket(hex("0000000e 04d2162e 00000001 abcd")).status).toBe("invalid");
    const tooLong = Buffer.concat([hex("0000010d 04d2162e 00000001"), Buffer.alloc(257)]);
    expect(parseFirstPacket(tooLong).status).toBe("invalid");
  });

  it("parses a StartupMessage keeping parameter order and raw bytes (LATIN1 values survive)", () => {
    const latin1Value = Buffer.from([0x63, 0x61, 0x66, 0xe9]); // "café" in LATIN1, not valid UTF-8
    const body = Buffer.concat([
      Buffer.from("user\0alice\0database\0orders\0application_name\0", "latin1"),
      latin1Value,
      Buffer.from("\0client_encoding\0LATIN1\0\0", "latin1"),
    ]);
    const head = Buffer.alloc(8);
    head.writeUInt32BE(8 + body.length, 0);
    head.writeUInt32BE(0x00030000, 4);
    const packet = Buffer.concat([head, body]);
    const r = parseFirstPacket(packet);
    expect(r.status).toBe("ok");
    if (r.status !== "ok" || r.packet.kind !== "startup") throw new Error("not a startup");
    expect(r.packet.majorVersion).toBe(3);
    expect(r.packet.minorVersion).toBe(0);
    expect(r.packet.parameters.map((p) => p.name.toString())).toEqual(["user", "database", "application_name", "client_encoding"]);
    expect(r.packet.parameters[2]!.value).toEqual(latin1Value);
    expect(startupParameter(r.packet, "user")).toBe("alice");
    // Re-encoding gives the identical bytes.
    expect(buildStartupMessage(3, 0, r.packet.parameters)).toEqual(packet);
  });

  it("accepts protocol 3.2 and _pq_ options as ordinary parameters", () => {
    const packet = buildStartupMessage(3, 2, [textParameter("user", "u"), textParameter("_pq_.test_option", "1")]);
    const r = parseFirstPacket(packet);
    expect(r).toMatchObject({ status: "ok", packet: { kind: "startup", minorVersion: 2 } });
  });

  it("waits for more bytes when the packet is incomplete", () => {
    const packet = buildStartupMessage(3, 0, [textParameter("user", "u")]);
    for (let n = 0; n < packet.length; n++) expect(parseFirstPacket(packet.subarray(0, n)).status).toBe("incomplete");
  });

  it("refuses lengths below 8 and above 10000 before waiting for the body", () => {
    expect(parseFirstPacket(hex("00000004")).status).toBe("invalid");
    expect(parseFirstPacket(hex("00002711")).status).toBe("invalid"); // 10001
    expect(parseFirstPacket(hex("00002710")).status).toBe("incomplete"); // 10000 is allowed
    expect(parseFirstPacket(Buffer.from("GET / HTTP/1.1\r\n")).status).toBe("invalid");
  });

  it("refuses malformed parameter lists and other protocol versions", () => {
    const head = (len: number, code: number) => {
      const b = Buffer.alloc(8);
      b.writeUInt32BE(len, 0);
      b.writeUInt32BE(code, 4);
      return b;
    };
    const unterminated = Buffer.concat([head(8 + 6, 0x30000), Buffer.from("user\0u")]);
    expect(parseFirstPacket(unterminated)).toMatchObject({ status: "invalid" });
    const trailing = Buffer.concat([head(8 + 9, 0x30000), Buffer.from("user\0u\0\0x")]);
    expect(parseFirstPacket(trailing)).toMatchObject({ status: "invalid" });
    expect(parseFirstPacket(Buffer.concat([head(9, 0x20000), Buffer.from([0])]))).toMatchObject({ status: "invalid" });
    expect(parseFirstPacket(Buffer.concat([head(12, 80877103), Buffer.alloc(4)]))).toMatchObject({ status: "invalid" }); // SSLRequest of wrong length
  });

  it("never throws on random bytes", () => {
    let seed = 42;
    const rand = () => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff), seed);
    for (let i = 0; i < 5000; i++) {
      const len = rand() % 64;
      const b = Buffer.alloc(len);
      for (let j = 0; j < len; j++) b[j] = rand() & 0xff;
      if (len >= 4 && i % 2 === 0) b.writeUInt32BE(Math.min(len, 8 + (rand() % 56)), 0);
      expect(() => parseFirstPacket(b)).not.toThrow();
    }
  });
});

/** The server's pg_split_opts, transcribed: whitespace separates words, a backslash makes the next character literal. */
function splitLikeServer(options: string): string[] {
  const words: string[] = [];
  let i = 0;
  while (i < options.length) {
    while (i < options.length && /\s/.test(options[i]!)) i++;
    if (i >= options.length) break;
    let word = "";
    let escaped = false;
    for (; i < options.length; i++) {
      const c = options[i]!;
      if (/\s/.test(c) && !escaped) break;
      if (!escaped && c === "\\") escaped = true;
      else {
        escaped = false;
        word += c;
      }
    }
    words.push(word);
  }
  return words;
}

describe("startup options for session settings", () => {
  it("backslash-escapes whitespace and backslashes, and nothing else", () => {
    expect(escapeOptionWord("search_path=a b\\c")).toBe("search_path=a\\ b\\\\c");
    expect(escapeOptionWord("x=tab\there\nnl")).toBe("x=tab\\\there\\\nnl");
    expect(escapeOptionWord("plain=on,'quoted'")).toBe("plain=on,'quoted'");
  });

  it("gives -c NAME=VALUE words that the server's splitting turns back into the exact settings", () => {
    const settings = { search_path: "a b\\c, public", application_name: " lead and trail ", statement_timeout: "30s", empty: "" };
    const options = settingOptions(settings);
    expect(splitLikeServer(options)).toEqual(["-c", "search_path=a b\\c, public", "-c", "application_name= lead and trail ", "-c", "statement_timeout=30s", "-c", "empty="]);
    // After a client's own options, the two stay separate words.
    expect(splitLikeServer(`-c geqo=off ${options}`).slice(0, 4)).toEqual(["-c", "geqo=off", "-c", "search_path=a b\\c, public"]);
  });
});

describe("appendOptions", () => {
  it("puts ours after the client's options, keeping the client's bytes", () => {
    expect(appendOptions(Buffer.from("-c geqo=off"), "-c jit=off").toString()).toBe("-c geqo=off -c jit=off");
    expect(appendOptions(Buffer.alloc(0), "-c jit=off").toString()).toBe("-c jit=off");
    expect(splitLikeServer(appendOptions(Buffer.from("-c x=a\\\\"), "-c jit=off").toString())).toEqual(["-c", "x=a\\", "-c", "jit=off"]);
  });

  it("drops a trailing unpaired backslash, which would glue our first word to the client's last (the server drops it anyway)", () => {
    const glued = "-c x=a\\ -c jit=off";
    expect(splitLikeServer(glued)).toEqual(["-c", "x=a -c", "jit=off"]);
    expect(splitLikeServer(appendOptions(Buffer.from("-c x=a\\"), "-c jit=off").toString())).toEqual(["-c", "x=a", "-c", "jit=off"]);
    expect(splitLikeServer("-c x=a\\")).toEqual(["-c", "x=a"]);
  });
});
