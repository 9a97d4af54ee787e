// Adds a hint to the server's ErrorResponses of one SQLSTATE, in the server-to-client byte stream after login.
// Only targets that need it (readOnly) put this in their relay: every other target relays raw bytes untouched.
// It follows message boundaries by their 5-byte headers and copies nothing but the ErrorResponses it holds.

import { errorFieldBytes, withErrorHint } from "@rdsd/pg-wire";

/** An ErrorResponse bigger than this passes unchanged instead of being held whole (none of ours is near it). */
export const MAX_HELD_ERROR_BYTES = 64 * 1024;

const ERROR_RESPONSE = 0x45; // 'E'

type Mode =
  /** At a message's first byte. */
  | "start"
  /** Reading a non-error message's 4 length bytes (passed through as they come). */
  | "length"
  /** Passing the rest of a non-error message through. */
  | "skip"
  /** Holding an ErrorResponse until it is complete. */
  | "error";

/**
 * Rewrites a backend message stream chunk by chunk. `push(chunk)` returns the bytes to send for it: the chunk
 * itself when it holds no ErrorResponse, slices of it around one, or nothing while an ErrorResponse split across
 * chunks is still incomplete (it is sent whole, hinted or not, once its last byte arrives).
 */
export class ErrorHintInjector {
  private mode: Mode = "start";
  /** "length": length bytes still to read; "skip": message bytes still to pass. */
  private remaining = 0;
  private length = 0;
  private held: Buffer[] = [];
  private heldBytes = 0;
  /** The held ErrorResponse's whole size, 0 until its 5-byte header is in. */
  private heldTotal = 0;
  private readonly code: Buffer;

  constructor(
    sqlState: string,
    private readonly hint: string,
  ) {
    this.code = Buffer.from(sqlState, "latin1");
  }

  push(chunk: Buffer): Buffer {
    // The common case: a chunk inside one long message (a big row, COPY data) passes at once.
    if (this.mode === "skip" && this.remaining > chunk.length) {
      this.remaining -= chunk.length;
      return chunk;
    }
    const out: Buffer[] = [];
    let passFrom = 0;
    let at = 0;
    while (at < chunk.length) {
      switch (this.mode) {
        case "skip": {
          const n = Math.min(this.remaining, chunk.length - at);
          this.remaining -= n;
          at += n;
          if (this.remaining === 0) this.mode = "start";
          break;
        }
        case "length":
          this.length = (this.length * 256 + chunk[at++]!) >>> 0;
          if (--this.remaining === 0) this.skipBody(this.length - 4);
          break;
        case "start":
          if (chunk[at] === ERROR_RESPONSE) {
            if (at > passFrom) out.push(chunk.subarray(passFrom, at));
            passFrom = at;
            this.mode = "error";
          } else {
            at++;
            this.mode = "length";
            this.remaining = 4;
            this.length = 0;
          }
          break;
        case "error": {
          const want = (this.heldTotal === 0 ? 5 : this.heldTotal) - this.heldBytes;
          const n = Math.min(want, chunk.length - at);
          this.held.push(chunk.subarray(at, at + n));
          this.heldBytes += n;
          at += n;
          passFrom = at;
          if (this.heldTotal === 0 && this.heldBytes === 5) {
            const header = Buffer.concat(this.held, 5);
            const total = 1 + header.readUInt32BE(1);
            if (total < 5 || total > MAX_HELD_ERROR_BYTES) {
              // Too big to hold, or malformed: it passes as it is.
              out.push(header);
              this.held = [];
              this.heldBytes = 0;
              this.skipBody(total - 5);
              break;
            }
            this.heldTotal = total;
          }
          if (this.heldTotal !== 0 && this.heldBytes === this.heldTotal) out.push(this.release());
          break;
        }
      }
    }
    if (out.length === 0) return passFrom === 0 ? chunk : chunk.subarray(passFrom);
    if (passFrom < chunk.length) out.push(chunk.subarray(passFrom));
    return out.length === 1 ? out[0]! : Buffer.concat(out);
  }

  private skipBody(bytes: number): void {
    this.remaining = Math.max(0, bytes);
    this.mode = this.remaining > 0 ? "skip" : "start";
  }

  /** The held ErrorResponse, with our hint when it carries our SQLSTATE. */
  private release(): Buffer {
    const message = Buffer.concat(this.held, this.heldTotal);
    this.held = [];
    this.heldBytes = 0;
    this.heldTotal = 0;
    this.mode = "start";
    const code = errorFieldBytes(message.subarray(5), "C");
    if (code === undefined || !code.equals(this.code)) return message;
    return withErrorHint(message, this.hint) ?? message;
  }
}
