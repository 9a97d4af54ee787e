import { buildErrorResponse, decodeErrorFields, frame, readBackendFrame } from "@rdsd/pg-wire";
import { describe, expect, it } from "vitest";
import { ErrorHintInjector, MAX_HELD_ERROR_BYTES } from "./error-hint.js";

const HINT = "target billing-prod is read-only in rdsd's config";

const readOnlyError = buildErrorResponse({ severity: "ERROR", code: "25006", message: "cannot execute CREATE TABLE in a read-only transaction" });
const otherError = buildErrorResponse({ severity: "ERROR", code: "42P01", message: 'relation "nope" does not exist' });
const dataRow = (text: string) => frame("D", Buffer.concat([Buffer.from([0, 1]), Buffer.from([0, 0, 0, text.length]), Buffer.from(text)]));
const ready = frame("Z", Buffer.from("I"));
/** An ErrorResponse of our SQLSTATE too big to hold: it must pass unchanged. */
const hugeReadOnlyError = buildErrorResponse({ severity: "ERROR", code: "25006", message: "x".repeat(MAX_HELD_ERROR_BYTES) });

/** A server's answer stream: rows, both errors, COPY data with 'E' bytes inside, the huge error. */
const stream = Buffer.concat([
  frame("T", Buffer.from("row description")),
  dataRow("E first"),
  dataRow("EEEEE"),
  frame("C", Buffer.from("SELECT 2\0")),
  ready,
  readOnlyError,
  ready,
  otherError,
  ready,
  frame("d", Buffer.alloc(20_000, 0x45)),
  frame("c", Buffer.alloc(0)),
  hugeReadOnlyError,
  readOnlyError,
  ready,
]);

/** The backend messages in `bytes`, with the hint of each error. */
function messages(bytes: Buffer): Array<{ type: string; length: number; code?: string; hint?: string }> {
  const out: Array<{ type: string; length: number; code?: string; hint?: string }> = [];
  let rest = bytes;
  while (rest.length > 0) {
    const result = readBackendFrame(rest, 1 << 24);
    if (result.status !== "ok") throw new Error(`not a message stream: ${result.status}`);
    const { type, body } = result.frame;
    if (type === "E") {
      const fields = decodeErrorFields(body);
      out.push({ type, length: result.length, code: fields.code, ...(fields.hint ? { hint: fields.hint } : {}) });
    } else {
      out.push({ type, length: result.length });
    }
    rest = rest.subarray(result.length);
  }
  return out;
}

function run(chunks: Buffer[]): Buffer {
  const injector = new ErrorHintInjector("25006", HINT);
  return Buffer.concat(chunks.map((c) => injector.push(c)));
}

const expected = run([stream]);

describe("ErrorHintInjector", () => {
  it("adds the hint to each held-size ErrorResponse of its SQLSTATE and to nothing else", () => {
    const out = messages(expected);
    const errors = out.filter((m) => m.type === "E");
    expect(errors).toEqual([
      { type: "E", length: expect.any(Number), code: "25006", hint: HINT },
      { type: "E", length: otherError.length, code: "42P01" },
      { type: "E", length: hugeReadOnlyError.length, code: "25006" },
      { type: "E", length: expect.any(Number), code: "25006", hint: HINT },
    ]);
    // Everything but the two hinted errors is byte for byte what the server sent.
    expect(out.map((m) => m.type)).toEqual(messages(stream).map((m) => m.type));
    expect(expected.length).toBe(stream.length + 2 * (HINT.length + 2));
  });

  it("gives the same bytes however the stream is cut: at every single position, and byte by byte", () => {
    for (let cut = 0; cut <= stream.length; cut += cut < 200 || cut > stream.length - 200 ? 1 : 97) {
      expect(run([stream.subarray(0, cut), stream.subarray(cut)]).equals(expected), `cut at ${cut}`).toBe(true);
    }
    const small = Buffer.concat([dataRow("E"), readOnlyError, ready, otherError]);
    const bytes = [...small].map((b) => Buffer.from([b]));
    const injector = new ErrorHintInjector("25006", HINT);
    expect(messages(Buffer.concat(bytes.map((b) => injector.push(b))))[1]).toMatchObject({ code: "25006", hint: HINT });
  });

  it("passes a chunk with no error through as the same Buffer (no copy)", () => {
    const injector = new ErrorHintInjector("25006", HINT);
    const rows = Buffer.concat([dataRow("a"), dataRow("b"), ready]);
    expect(injector.push(rows)).toBe(rows);
    const big = frame("d", Buffer.alloc(100_000));
    const first = big.subarray(0, 50_000);
    const second = big.subarray(50_000);
    expect(injector.push(first)).toBe(first);
    expect(injector.push(second)).toBe(second);
  });
});
