import { createHash } from "node:crypto";
import { once } from "node:events";
import type { Duplex } from "node:stream";
import { staticCredentialProvider } from "@rdsd/iam";
import type { Emulator } from "@rdsd/ssm-emulator";
import { tcpServer } from "@rdsd/testkit";
import { SsmApi } from "../src/ssm-api.js";

export const RDS_HOST = "orders-dev.abc123xyz.eu-west-2.rds.amazonaws.com";

export function apiFor(emulator: Emulator): SsmApi {
  return new SsmApi({ region: emulator.region, endpoint: emulator.endpoint, credentials: staticCredentialProvider(emulator.credentials) });
}

/** Answers an SSLRequest with 'S' and then echoes: enough for the tunnel's probe. */
export const sslAnsweringEchoServer = () =>
  tcpServer((s) => {
    let head = Buffer.alloc(0);
    let answered = false;
    s.on("data", (chunk: Buffer) => {
      if (answered) {
        s.write(chunk);
        return;
      }
      head = Buffer.concat([head, chunk]);
      if (head.length < 8) return;
      answered = true;
      if (head.readUInt32BE(4) === 80877103) {
        s.write("S");
        if (head.length > 8) s.write(head.subarray(8));
      } else s.write(head);
    });
  });

export function sha256(data: Buffer): string {
  return createHash("sha256").update(data).digest("hex");
}

/** Writes `data` in pieces, honouring backpressure. */
export async function writeAll(stream: Duplex, data: Buffer, piece = 64 << 10): Promise<void> {
  for (let offset = 0; offset < data.length; offset += piece) {
    if (!stream.write(data.subarray(offset, Math.min(offset + piece, data.length)))) await once(stream, "drain");
  }
}

/** The error a stream ends with (or undefined when it closes cleanly). */
export function streamError(stream: Duplex): Promise<Error | undefined> {
  return new Promise((resolve) => {
    let error: Error | undefined;
    stream.on("error", (e) => (error = e));
    stream.once("close", () => resolve(error));
    stream.resume();
  });
}
