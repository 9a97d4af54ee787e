import { describe, expect, it } from "vitest";
import { ipLiteralBytes } from "./ip-literal.js";

const hex = (address: string) => {
  const literal = ipLiteralBytes(address);
  return literal && { family: literal.family, hex: Buffer.from(literal.bytes).toString("hex") };
};

describe("ipLiteralBytes", () => {
  it("reads IPv4 dotted quads in network order", () => {
    expect(hex("127.0.0.1")).toEqual({ family: 4, hex: "7f000001" });
    expect(hex("0.0.0.0")).toEqual({ family: 4, hex: "00000000" });
    expect(hex("255.254.10.1")).toEqual({ family: 4, hex: "fffe0a01" });
  });

  it("expands IPv6, with '::' anywhere", () => {
    expect(hex("::1")).toEqual({ family: 6, hex: "00000000000000000000000000000001" });
    expect(hex("::")).toEqual({ family: 6, hex: "00000000000000000000000000000000" });
    expect(hex("1::")).toEqual({ family: 6, hex: "00010000000000000000000000000000" });
    expect(hex("fe80::1:2")).toEqual({ family: 6, hex: "fe800000000000000000000000010002" });
    expect(hex("2001:DB8::a:0:b")).toEqual({ family: 6, hex: "20010db8000000000000000a0000000b" });
    expect(hex("1:2:3:4:5:6:7:8")).toEqual({ family: 6, hex: "00010002000300040005000600070008" });
    expect(hex("1:2:3::6:7:8")).toEqual({ family: 6, hex: "00010002000300000000000600070008" });
  });

  it("reads a trailing dotted quad inside IPv6", () => {
    expect(hex("64:ff9b::192.0.2.33")).toEqual({ family: 6, hex: "0064ff9b0000000000000000c0000221" });
    expect(hex("::1.2.3.4")).toEqual({ family: 6, hex: "00000000000000000000000001020304" });
    expect(hex("1:2:3:4:5:6:1.2.3.4")).toEqual({ family: 6, hex: "00010002000300040005000601020304" });
  });

  it("turns IPv4-mapped IPv6 into IPv4, in dotted or hex form", () => {
    expect(hex("::ffff:127.0.0.1")).toEqual({ family: 4, hex: "7f000001" });
    expect(hex("::FFFF:7f00:1")).toEqual({ family: 4, hex: "7f000001" });
    expect(hex("0:0:0:0:0:ffff:10.1.2.3")).toEqual({ family: 4, hex: "0a010203" });
    // Not mapped: ffff in another position, or the IPv4-compatible form.
    expect(hex("::ffff:0:7f00:1")!.family).toBe(6);
  });

  it("drops an IPv6 zone id", () => {
    expect(hex("fe80::1%eth0")).toEqual({ family: 6, hex: "fe800000000000000000000000000001" });
  });

  it("refuses what is not an IP literal", () => {
    for (const text of ["", "localhost", "1.2.3", "1.2.3.4.5", "256.1.1.1", "01.2.3.4", ":::1", "1:2:3:4:5:6:7:8:9", "1::2::3", "127.0.0.1:80", "[::1]", " 127.0.0.1"]) {
      expect(ipLiteralBytes(text), text).toBeUndefined();
    }
  });
});
