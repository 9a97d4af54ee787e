// smux protocol version 1 frames: 8-byte header (version, command, little-endian length and stream id), then data.

export const SMUX_VERSION = 1;
export const SMUX_HEADER_LENGTH = 8;
/** The largest data a frame carries by default (xtaci/smux MaxFrameSize). */
export const SMUX_DEFAULT_MAX_FRAME_SIZE = 32768;
/** The length field is 16 bits. */
export const SMUX_MAX_FRAME_DATA = 0xffff;

export const SmuxCommand = {
  Syn: 0,
  Fin: 1,
  Psh: 2,
  Nop: 3,
} as const;
export type SmuxCommandValue = (typeof SmuxCommand)[keyof typeof SmuxCommand];

export interface SmuxFrame {
  command: SmuxCommandValue;
  streamId: number;
  /** Empty for SYN, FIN, NOP. A view into the decoder's input where possible. */
  data: Buffer;
}

export class SmuxProtocolError extends Error {
  override name = "SmuxProtocolError";
}

/** Encodes one frame. */
export function encodeSmuxFrame(command: SmuxCommandValue, streamId: number, data?: Uint8Array): Buffer {
  const length = data?.length ?? 0;
  if (length > SMUX_MAX_FRAME_DATA) throw new RangeError(`smux frame data too long: ${length}`);
  if (!Number.isInteger(streamId) || streamId < 0 || streamId > 0xffffffff) throw new RangeError("bad smux stream id");
  const out = Buffer.allocUnsafe(SMUX_HEADER_LENGTH + length);
  out[0] = SMUX_VERSION;
  out[1] = command;
  out.writeUInt16LE(length, 2);
  out.writeUInt32LE(streamId, 4);
  if (data && length > 0) out.set(data, SMUX_HEADER_LENGTH);
  return out;
}

/**
 * Cuts a smux byte stream, arriving in arbitrary pieces, into frames. Pure: no I/O.
 * Throws SmuxProtocolError on a wrong version or an unknown command; the stream is then unusable.
 */
export class SmuxFrameDecoder {
  private chunks: Buffer[] = [];
  private buffered = 0;
  private failed: SmuxProtocolError | undefined;

  /** Bytes held while waiting for the rest of a frame. */
  get pendingBytes(): number {
    return this.buffered;
  }

  push(chunk: Uint8Array): SmuxFrame[] {
    if (this.failed) throw this.failed;
    if (chunk.length > 0) {
      this.chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.length));
      this.buffered += chunk.length;
    }
    const frames: SmuxFrame[] = [];
    while (this.buffered >= SMUX_HEADER_LENGTH) {
      const header = this.peek(SMUX_HEADER_LENGTH);
      const version = header[0];
      const command = header[1];
      if (version !== SMUX_VERSION) {
        this.failed = new SmuxProtocolError(`smux version ${String(version)} (expected ${SMUX_VERSION})`);
        throw this.failed;
      }
      if (command === undefined || command > SmuxCommand.Nop) {
        this.failed = new SmuxProtocolError(`unknown smux command ${String(command)}`);
        throw this.failed;
      }
      const length = header.readUInt16LE(2);
      if (this.buffered < SMUX_HEADER_LENGTH + length) break;
      const streamId = header.readUInt32LE(4);
      this.skip(SMUX_HEADER_LENGTH);
      const data = length > 0 ? this.take(length) : Buffer.alloc(0);
      frames.push({ command: command as SmuxCommandValue, streamId, data });
    }
    return frames;
  }

  /** The first n buffered bytes, without consuming them. */
  private peek(n: number): Buffer {
    const first = this.chunks[0]!;
    if (first.length >= n) return first.subarray(0, n);
    const out = Buffer.allocUnsafe(n);
    let filled = 0;
    for (const chunk of this.chunks) {
      const copied = chunk.copy(out, filled, 0, Math.min(chunk.length, n - filled));
      filled += copied;
      if (filled === n) break;
    }
    return out;
  }

  private skip(n: number): void {
    this.take(n);
  }

  /** Removes and returns the first n buffered bytes (a view when they sit in one chunk). */
  private take(n: number): Buffer {
    this.buffered -= n;
    const first = this.chunks[0]!;
    if (first.length > n) {
      this.chunks[0] = first.subarray(n);
      return first.subarray(0, n);
    }
    if (first.length === n) {
      this.chunks.shift();
      return first;
    }
    const out = Buffer.allocUnsafe(n);
    let filled = 0;
    while (filled < n) {
      const chunk = this.chunks[0]!;
      const need = n - filled;
      if (chunk.length <= need) {
        chunk.copy(out, filled);
        filled += chunk.length;
        this.chunks.shift();
      } else {
        chunk.copy(out, filled, 0, need);
        this.chunks[0] = chunk.subarray(need);
        filled += need;
      }
    }
    return out;
  }
}
