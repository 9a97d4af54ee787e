import { describe, expect, it } from "vitest";
import { buildErrorResponse, buildParameterStatus, buildReadyForQuery, frame } from "./backend.js";
import { BackendMessages, endedCleanly, FrontendMessages } from "./message-boundaries.js";

const msg = (type: string, body: Buffer | string = Buffer.alloc(0)) => frame(type, typeof body === "string" ? Buffer.from(body, "latin1") : body);
const query = (sql: string) => msg("Q", sql + "\0");
const terminate = () => msg("X");
const sync = () => msg("S");
const dataRow = (bytes: number) => msg("D", Buffer.alloc(bytes, 0x61));
const copyData = (bytes: number) => msg("d", Buffer.alloc(bytes, 0x62));
const commandComplete = (tag: string) => msg("C", tag + "\0");

/** Feeds `bytes` cut at every given offset. */
function feedSplit(walker: BackendMessages | FrontendMessages, bytes: Buffer, cuts: number[]): void {
  let from = 0;
  for (const cut of [...cuts, bytes.length]) {
    walker.feed(bytes.subarray(from, cut));
    from = cut;
  }
}

/** A query's whole answer: row description, rows, completion, then ReadyForQuery with `status`. */
function answer(status: "I" | "T" | "E", rows = 3): Buffer {
  return Buffer.concat([msg("T", Buffer.alloc(20)), ...Array.from({ length: rows }, () => dataRow(50)), commandComplete(`SELECT ${rows}`), buildReadyForQuery(status)]);
}

describe("BackendMessages", () => {
  it("follows a whole answer in one chunk: ReadyForQuery's status, one ready per answer, at a boundary", () => {
    const backend = new BackendMessages();
    backend.feed(answer("T"));
    expect(backend).toMatchObject({ transactionStatus: "T", readyCount: 1, copying: false, atBoundary: true, broken: undefined });
    backend.feed(answer("I"));
    expect(backend).toMatchObject({ transactionStatus: "I", readyCount: 2 });
  });

  it("gives the same result whatever byte each split falls on, headers and captured bodies included", () => {
    const bytes = Buffer.concat([answer("E"), buildParameterStatus("TimeZone", "Europe/London"), answer("T", 1)]);
    for (let cut = 1; cut < bytes.length; cut++) {
      for (const second of [cut + 1, cut + 3, cut + 7]) {
        if (second >= bytes.length) continue;
        const backend = new BackendMessages();
        feedSplit(backend, bytes, [cut, second]);
        expect(backend, `cuts at ${cut} and ${second}`).toMatchObject({ transactionStatus: "T", readyCount: 2, atBoundary: true });
        expect(backend.parameters.get("TimeZone")).toBe("Europe/London");
      }
    }
  });

  it("fed one byte at a time, is at a boundary exactly between messages", () => {
    const messages = [dataRow(3), commandComplete("SELECT 1"), buildReadyForQuery("I")];
    const backend = new BackendMessages();
    for (const m of messages) {
      for (let i = 0; i < m.length; i++) {
        expect(backend.atBoundary).toBe(i === 0);
        backend.feed(m.subarray(i, i + 1));
      }
    }
    expect(backend.atBoundary).toBe(true);
    expect(backend.readyCount).toBe(1);
  });

  it("tracks ParameterStatus changes over the values it started with", () => {
    const parameters = new Map([
      ["DateStyle", "ISO, MDY"],
      ["TimeZone", "UTC"],
    ]);
    const backend = new BackendMessages(parameters);
    backend.feed(Buffer.concat([buildParameterStatus("DateStyle", "German, DMY"), commandComplete("SET"), buildReadyForQuery("I")]));
    expect(Object.fromEntries(parameters)).toEqual({ DateStyle: "German, DMY", TimeZone: "UTC" });
  });

  it("a COPY is in progress from CopyIn/CopyOut/CopyBoth until the next ReadyForQuery", () => {
    for (const type of ["G", "H", "W"]) {
      const backend = new BackendMessages();
      backend.feed(msg(type, Buffer.from([0, 0, 1, 0, 0])));
      expect(backend.copying).toBe(true);
      backend.feed(Buffer.concat([copyData(100), copyData(100), msg("c")]));
      expect(backend.copying).toBe(true);
      backend.feed(Buffer.concat([commandComplete("COPY 2"), buildReadyForQuery("I")]));
      expect(backend.copying).toBe(false);
    }
  });

  it("remembers the last message type and counts errors (a close right after 'E' is the server's own FATAL)", () => {
    const backend = new BackendMessages();
    backend.feed(buildErrorResponse({ severity: "FATAL", code: "57P01", message: "terminating connection due to administrator command" }));
    expect(backend.lastType).toBe("E".charCodeAt(0));
    expect(backend.errors).toBe(1);
  });

  it("a body larger than a chunk is skipped without being held: a 1 MB DataRow in 64 KB chunks", () => {
    const bytes = Buffer.concat([dataRow(1 << 20), buildReadyForQuery("I")]);
    const backend = new BackendMessages();
    for (let at = 0; at < bytes.length; at += 65536) {
      backend.feed(bytes.subarray(at, at + 65536));
      expect(backend.atBoundary).toBe(at + 65536 >= bytes.length);
    }
    expect(backend.readyCount).toBe(1);
  });

  it("a length below 4 or a malformed ReadyForQuery stops the tracking (broken, never at a boundary again)", () => {
    const short = new BackendMessages();
    short.feed(Buffer.from([0x44, 0, 0, 0, 3]));
    expect(short.broken).toMatch(/length 3/);
    expect(short.atBoundary).toBe(false);
    short.feed(buildReadyForQuery("I"));
    expect(short.readyCount).toBe(0);

    const odd = new BackendMessages();
    odd.feed(msg("Z", "X"));
    expect(odd.broken).toMatch(/ReadyForQuery/);
    const huge = new BackendMessages();
    huge.feed(Buffer.from([0x53, 0x7f, 0, 0, 0]));
    expect(huge.broken).toMatch(/small one/);
  });
});

describe("FrontendMessages", () => {
  it("counts the requests the server answers with a ReadyForQuery: Query, Sync, FunctionCall", () => {
    const frontend = new FrontendMessages();
    frontend.feed(Buffer.concat([query("select 1"), msg("P", "\0select 1\0\0\0"), msg("B", Buffer.alloc(10)), msg("E", "\0\0\0\0\0")]));
    expect(frontend).toMatchObject({ requests: 1, unsynced: true });
    frontend.feed(sync());
    expect(frontend).toMatchObject({ requests: 2, unsynced: false });
    frontend.feed(msg("F", Buffer.alloc(12)));
    expect(frontend.requests).toBe(3);
  });

  it("finds a Terminate's offset in its chunk, and -1 when its header began in the chunk before", () => {
    const q = query("select 1");
    const whole = new FrontendMessages();
    whole.feed(Buffer.concat([q, terminate()]));
    expect(whole.terminateAt).toBe(q.length);

    const split = new FrontendMessages();
    const bytes = Buffer.concat([q, terminate()]);
    split.feed(bytes.subarray(0, q.length + 2));
    expect(split.terminateAt).toBeUndefined();
    split.feed(bytes.subarray(q.length + 2));
    expect(split.terminateAt).toBe(-1);
  });

  it("notices bytes after a Terminate", () => {
    const frontend = new FrontendMessages();
    frontend.feed(Buffer.concat([terminate(), query("select 1")]));
    expect(frontend.afterTerminate).toBe(true);
    expect(frontend.requests).toBe(0);
    // Also after a message type the tracker otherwise skips unseen (CopyData).
    const copy = new FrontendMessages();
    copy.feed(terminate());
    expect(copy.afterTerminate).toBe(false);
    copy.feed(copyData(3));
    expect(copy.afterTerminate).toBe(true);
  });
});

describe("endedCleanly", () => {
  function session(clientBytes: Buffer[], serverBytes: Buffer[]) {
    const frontend = new FrontendMessages();
    const backend = new BackendMessages();
    for (const b of clientBytes) frontend.feed(b);
    for (const b of serverBytes) backend.feed(b);
    return endedCleanly(frontend, backend);
  }

  it("yes: every request answered, idle, then a whole Terminate", () => {
    expect(session([query("select 1"), query("select 2"), terminate()], [answer("I"), answer("I")])).toBe(true);
  });

  it("no: no Terminate (the client vanished)", () => {
    expect(session([query("select 1")], [answer("I")])).toBe(false);
  });

  it("no: a transaction block open or failed", () => {
    expect(session([query("begin"), terminate()], [answer("T")])).toBe(false);
    expect(session([query("begin"), query("oops"), terminate()], [answer("T"), answer("E")])).toBe(false);
  });

  it("no: a query still unanswered (pipelined, or killed mid-query)", () => {
    expect(session([query("select 1"), query("select pg_sleep(10)"), terminate()], [answer("I")])).toBe(false);
  });

  it("no: the server is half-way through a message", () => {
    const a = answer("I");
    expect(session([query("select 1"), query("select 2"), terminate()], [a, a.subarray(0, 10)])).toBe(false);
  });

  it("no: extended-query messages without their Sync", () => {
    expect(session([msg("P", "\0select 1\0\0\0"), terminate()], [])).toBe(false);
  });

  it("no: mid-COPY (CopyIn answered, data sent, no CopyDone)", () => {
    expect(session([query("copy t from stdin"), copyData(10), terminate()], [msg("G", Buffer.from([0, 0, 0]))])).toBe(false);
  });

  it("no: a Terminate split across chunks, or followed by more bytes", () => {
    const x = terminate();
    expect(session([query("select 1"), x.subarray(0, 1), x.subarray(1)], [answer("I")])).toBe(false);
    expect(session([query("select 1"), Buffer.concat([x, query("select 2")])], [answer("I")])).toBe(false);
  });
});
