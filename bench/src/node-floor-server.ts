// The floor under any Node.js Postgres proxy, for the connect bench: a server that accepts, answers the
// startup with a canned greeting, answers every query with one canned row and closes on Terminate. No
// upstream, no TLS, no login, no logging: only what Node costs per connection (accept, Socket and stream
// objects, one read and one write per exchange, close). Run as its own process: `node node-floor-server.js`;
// it prints its port.

import net from "node:net";
import { buildAuthenticationOk, buildBackendKeyData, buildReadyForQuery, frame } from "@rdsd/pg-wire";

const SSL_REQUEST_CODE = 80877103;

/** RowDescription of `count` int4 columns: enough for pgbench's setup queries and its `-S` SELECT. */
function rowDescription(count: number): Buffer {
  const fields: Buffer[] = [Buffer.from([count >> 8, count & 0xff])];
  for (let i = 0; i < count; i++) {
    const field = Buffer.alloc(18);
    field.writeInt32BE(23, 6); // type oid int4 (after table oid 4 bytes and column number 2 bytes)
    field.writeInt16BE(4, 10); // type size
    field.writeInt32BE(-1, 12); // type modifier; format code 0 (text) follows
    fields.push(Buffer.from(`c${i}\0`, "latin1"), field);
  }
  return frame("T", Buffer.concat(fields));
}

/** One row, text values; null is SQL NULL. */
function dataRow(values: Array<string | null>): Buffer {
  const parts: Buffer[] = [Buffer.from([values.length >> 8, values.length & 0xff])];
  for (const value of values) {
    const length = Buffer.alloc(4);
    length.writeInt32BE(value === null ? -1 : Buffer.byteLength(value), 0);
    parts.push(length, Buffer.from(value ?? ""));
  }
  return frame("D", Buffer.concat(parts));
}

// pgbench asks for the scale (count(*) of pgbench_branches: column 1) and, in one query, whether
// pgbench_accounts exists, its partitioning (NULL: none) and partition count; `-S` then selects a balance.
const GREETING = Buffer.concat([buildAuthenticationOk(), buildBackendKeyData(1, Buffer.alloc(4)), buildReadyForQuery("I")]);
const ANSWER = Buffer.concat([rowDescription(3), dataRow(["1", null, "0"]), frame("C", Buffer.from("SELECT 1\0")), buildReadyForQuery("I")]);

function serve(socket: net.Socket): void {
  let buffered: Buffer = Buffer.alloc(0);
  let started = false;
  socket.on("error", () => socket.destroy());
  socket.on("data", (chunk: Buffer) => {
    buffered = buffered.length === 0 ? chunk : Buffer.concat([buffered, chunk]);
    for (;;) {
      // Startup-phase packets have no type byte; later messages do.
      const header = started ? 5 : 4;
      if (buffered.length < header) return;
      const length = (started ? buffered.readUInt32BE(1) + 1 : buffered.readUInt32BE(0));
      if (buffered.length < length) return;
      const message = buffered.subarray(0, length);
      buffered = buffered.subarray(length);
      if (!started) {
        if (message.length === 8 && message.readUInt32BE(4) === SSL_REQUEST_CODE) socket.write("N");
        else {
          started = true;
          socket.write(GREETING);
        }
      } else if (message[0] === 0x58 /* X: Terminate */) {
        socket.end();
        return;
      } else if (message[0] === 0x51 /* Q: Query */) {
        socket.write(ANSWER);
      }
    }
  });
}

const server = net.createServer({ noDelay: true }, serve);
server.listen(0, "127.0.0.1", () => {
  console.log(`node floor server listening on port ${(server.address() as net.AddressInfo).port}`);
});
process.on("SIGTERM", () => process.exit(0));
