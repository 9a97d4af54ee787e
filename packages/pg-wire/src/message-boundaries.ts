/**
 * Following protocol-3 message boundaries in a relayed byte stream, from the 5-byte headers only (type
 * byte, int32 length including itself). Bodies are skipped without copying, except the few small ones a
 * tracker asks for (ReadyForQuery's status, ParameterStatus). Headers and captured bodies may be split
 * across chunks anywhere. Pure: bytes in, state out; no sockets, no timers.
 */

import { decodeParameterStatus } from "./backend.js";

const HEADER_LENGTH = 5;
/** A captured body (ParameterStatus) is never near this big; more means the stream is not what we think. */
const MAX_CAPTURED_BODY = 64 * 1024;

const code = (c: string) => c.charCodeAt(0);

/** What a tracker does with a message type: nothing but skip it, note its start, or also read its (small) body. */
const SKIP = 0;
const NOTE = 1;
const CAPTURE = 2;

/** The walking, shared by both directions. Subclasses say which types they note or capture, and what those mean. */
abstract class MessageWalker {
  private readonly header = Buffer.alloc(HEADER_LENGTH);
  private headerFill = 0;
  /** Body bytes of the current message not yet seen. */
  private remaining = 0;
  private capture: Buffer | undefined;
  private captureFill = 0;
  private captureType = 0;
  /** Why the stream cannot be followed any more (a length below 4 or an absurd captured body); then nothing is tracked. */
  broken: string | undefined;
  /** The type byte of the latest message that started. */
  lastType = 0;

  /** @param kinds SKIP, NOTE or CAPTURE for each type byte */
  protected constructor(private readonly kinds: Uint8Array) {}

  /** True between two messages: no header or body is half-way. */
  get atBoundary(): boolean {
    return this.headerFill === 0 && this.remaining === 0 && this.broken === undefined;
  }

  /** Follows one chunk of the stream. */
  feed(chunk: Buffer): void {
    if (this.broken !== undefined) return;
    const end = chunk.length;
    let i = 0;
    while (i < end) {
      if (this.remaining > 0) {
        const take = Math.min(this.remaining, end - i);
        if (this.capture) {
          chunk.copy(this.capture, this.captureFill, i, i + take);
          this.captureFill += take;
        }
        i += take;
        this.remaining -= take;
        if (this.remaining === 0 && this.capture) this.completeCapture();
        continue;
      }
      let type: number;
      let length: number;
      let start: number;
      if (this.headerFill === 0 && end - i >= HEADER_LENGTH) {
        // The common case: a whole header in this chunk, read in place.
        type = chunk[i]!;
        length = ((chunk[i + 1]! << 24) | (chunk[i + 2]! << 16) | (chunk[i + 3]! << 8) | chunk[i + 4]!) >>> 0;
        if (this.kinds[type] === SKIP && length >= 4) {
          // The hot path (DataRow, CopyData): step over the message, or note how much of it is still to come.
          this.lastType = type;
          const next = i + 1 + length;
          if (next > end) {
            this.remaining = next - end;
            return;
          }
          i = next;
          continue;
        }
        start = i;
        i += HEADER_LENGTH;
      } else {
        const take = Math.min(HEADER_LENGTH - this.headerFill, end - i);
        chunk.copy(this.header, this.headerFill, i, i + take);
        // The message started in this chunk only if its first header byte is in it.
        start = this.headerFill === 0 ? i : -1;
        this.headerFill += take;
        i += take;
        if (this.headerFill < HEADER_LENGTH) return;
        this.headerFill = 0;
        type = this.header[0]!;
        length = this.header.readUInt32BE(1);
      }
      if (length < 4) {
        this.broken = `message '${String.fromCharCode(type)}' with length ${length}`;
        return;
      }
      this.lastType = type;
      const bodyLength = length - 4;
      const kind = this.kinds[type]!;
      if (kind !== SKIP) this.started(type, start);
      if (kind === CAPTURE) {
        if (bodyLength > MAX_CAPTURED_BODY) {
          this.broken = `message '${String.fromCharCode(type)}' of ${bodyLength} bytes where a small one belongs`;
          return;
        }
        this.capture = Buffer.allocUnsafe(bodyLength);
        this.captureFill = 0;
        this.captureType = type;
        this.remaining = bodyLength;
        if (bodyLength === 0) this.completeCapture();
      } else {
        this.remaining = bodyLength;
      }
    }
  }

  private completeCapture(): void {
    const body = this.capture!;
    this.capture = undefined;
    this.completed(this.captureType, body);
  }

  /** A noted or captured message's header was read; `start` is its offset in the current chunk, -1 when it began in an earlier one. */
  protected abstract started(type: number, start: number): void;
  /** A captured message ended, with its body. */
  protected abstract completed(type: number, body: Buffer): void;
}

function kindTable(entries: ReadonlyArray<[string, number]>): Uint8Array {
  const kinds = new Uint8Array(256);
  for (const [type, kind] of entries) kinds[code(type)] = kind;
  return kinds;
}

/** The transaction status in a ReadyForQuery: idle, in a transaction block, in a failed one. */
export type TransactionStatus = "I" | "T" | "E";

const READY_FOR_QUERY = code("Z");
const PARAMETER_STATUS = code("S");
const ERROR_RESPONSE = code("E");
const COPY_IN = code("G");
const COPY_OUT = code("H");
const COPY_BOTH = code("W");

const BACKEND_KINDS = kindTable([
  ["Z", CAPTURE],
  ["S", CAPTURE],
  ["E", NOTE],
  ["G", NOTE],
  ["H", NOTE],
  ["W", NOTE],
]);

/** What the server's half of a session says, from the messages after login. */
export class BackendMessages extends MessageWalker {
  /** The status of the latest ReadyForQuery (a login ends with one). */
  transactionStatus: TransactionStatus = "I";
  /** ReadyForQuery messages seen: one answers each Query, Sync or FunctionCall. */
  readyCount = 0;
  /** A CopyIn/Out/BothResponse was seen and no ReadyForQuery since. */
  copying = false;
  /** ErrorResponses seen (a reset must see none). */
  errors = 0;

  /** @param parameters the server's reportable settings, updated in place as ParameterStatus messages arrive */
  constructor(readonly parameters: Map<string, string> = new Map()) {
    super(BACKEND_KINDS);
  }

  protected started(type: number): void {
    if (type === COPY_IN || type === COPY_OUT || type === COPY_BOTH) this.copying = true;
    else if (type === ERROR_RESPONSE) this.errors++;
  }

  protected completed(type: number, body: Buffer): void {
    if (type === READY_FOR_QUERY) {
      this.readyCount++;
      this.copying = false;
      const status = body.length === 1 ? String.fromCharCode(body[0]!) : "";
      if (status === "I" || status === "T" || status === "E") this.transactionStatus = status;
      else this.broken = `ReadyForQuery with status ${JSON.stringify(status)}`;
    } else if (type === PARAMETER_STATUS) {
      const parsed = decodeParameterStatus(body);
      if (parsed) this.parameters.set(parsed.name, parsed.value);
      else this.broken = "malformed ParameterStatus";
    }
  }
}

const QUERY = code("Q");
const SYNC = code("S");
const FUNCTION_CALL = code("F");
const TERMINATE = code("X");
/** Extended-query messages that leave the server owing a ReadyForQuery only once a Sync follows. */
const UNSYNCED = new Set(["P", "B", "E", "D", "C", "H"].map(code));
const FRONTEND_KINDS = kindTable([..."QSFX", ..."PBEDCH"].map((type) => [type, NOTE]));

/** What the client's half of a session says. */
export class FrontendMessages extends MessageWalker {
  /** Messages the server answers with one ReadyForQuery each: Query, Sync, FunctionCall. */
  requests = 0;
  /** Parse/Bind/Execute/Describe/Close/Flush sent since the last Sync. */
  unsynced = false;
  /**
   * Set when a Terminate starts: its offset in the chunk being fed (bytes before it belong to the session),
   * or -1 when its header began in an earlier chunk (already partly forwarded).
   */
  terminateAt: number | undefined;
  private messageAfterTerminate = false;

  constructor() {
    super(FRONTEND_KINDS);
  }

  protected started(type: number, start: number): void {
    if (this.terminateAt !== undefined) {
      this.messageAfterTerminate = true;
      return;
    }
    if (type === QUERY || type === FUNCTION_CALL) this.requests++;
    else if (type === SYNC) {
      this.requests++;
      this.unsynced = false;
    } else if (type === TERMINATE) this.terminateAt = start;
    else if (UNSYNCED.has(type)) this.unsynced = true;
  }

  protected completed(): void {}

  /** A message followed a Terminate: the client broke the protocol. */
  get afterTerminate(): boolean {
    return this.terminateAt !== undefined && (this.messageAfterTerminate || this.lastType !== TERMINATE);
  }
}

/**
 * True when the session can be handed to another client: the client ended with a whole Terminate at a
 * boundary, every request it sent has its ReadyForQuery, no COPY is open, and the server is idle outside
 * a transaction block.
 */
export function endedCleanly(frontend: FrontendMessages, backend: BackendMessages): boolean {
  return (
    frontend.terminateAt !== undefined &&
    frontend.terminateAt >= 0 &&
    !frontend.afterTerminate &&
    frontend.atBoundary &&
    !frontend.unsynced &&
    backend.atBoundary &&
    frontend.requests === backend.readyCount &&
    !backend.copying &&
    backend.transactionStatus === "I"
  );
}
