import { describe, expect, it } from "vitest";
import { encodeSmuxFrame, SmuxCommand, SmuxFrameDecoder, SmuxProtocolError } from "./smux-frame.js";

describe("smux v1 frames", () => {
  it("writes version 1, the command, little-endian length and stream id", () => {
    const frame = encodeSmuxFrame(SmuxCommand.Psh, 0x01020304, Buffer.from("abc"));
    expect(frame.toString("hex")).toBe("01" + "02" + "0300" + "04030201" + "616263");
    expect(encodeSmuxFrame(SmuxCommand.Syn, 3).toString("hex")).toBe("0100000003000000");
  });

  it("decodes a stream cut at every possible point", () => {
    const stream = Buffer.concat([
      encodeSmuxFrame(SmuxCommand.Syn, 3),
      encodeSmuxFrame(SmuxCommand.Psh, 3, Buffer.from("hello world")),
      encodeSmuxFrame(SmuxCommand.Nop, 0),
      encodeSmuxFrame(SmuxCommand.Fin, 3),
    ]);
    for (let cut1 = 0; cut1 <= stream.length; cut1++) {
      for (let cut2 = cut1; cut2 <= stream.length; cut2 += 3) {
        const decoder = new SmuxFrameDecoder();
        const frames = [
          ...decoder.push(stream.subarray(0, cut1)),
          ...decoder.push(stream.subarray(cut1, cut2)),
          ...decoder.push(stream.subarray(cut2)),
        ];
        expect(frames.map((f) => [f.command, f.streamId, f.data.toString()])).toEqual([
          [SmuxCommand.Syn, 3, ""],
          [SmuxCommand.Psh, 3, "hello world"],
          [SmuxCommand.Nop, 0, ""],
          [SmuxCommand.Fin, 3, ""],
        ]);
        expect(decoder.pendingBytes).toBe(0);
      }
    }
  });

  it("rejects another protocol version and unknown commands", () => {
    expect(() => new SmuxFrameDecoder().push(Buffer.from("0200000003000000", "hex"))).toThrow(SmuxProtocolError);
    expect(() => new SmuxFrameDecoder().push(Buffer.from("0104000003000000", "hex"))).toThrow(/unknown smux command 4/);
  });
});
