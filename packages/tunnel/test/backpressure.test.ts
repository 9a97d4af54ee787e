import { afterAll, beforeAll, expect, it } from "vitest";
import { startEmulator } from "@rdsd/ssm-emulator";
import type { Emulator } from "@rdsd/ssm-emulator";
import { randomUuid } from "@rdsd/ssm-protocol";
import { openNativeSession } from "../src/native-session.js";
import type { SsmApi } from "../src/ssm-api.js";
import { readHashed, seededBytes, tcpServer } from "@rdsd/testkit";
import type { TcpServer } from "@rdsd/testkit";
import { apiFor, RDS_HOST, sha256 } from "./helpers.js";

const SIZE = 24 << 20;
let emulator: Emulator;
let source: TcpServer;
let api: SsmApi;

beforeAll(async () => {
  // Sends SIZE bytes as fast as TCP lets it, once the client says anything.
  source = await tcpServer((s) => s.once("data", () => s.end(seededBytes(SIZE, 3))));
  emulator = await startEmulator({ pacing: false, hostMap: [`${RDS_HOST}=127.0.0.1:${source.port}`] });
  api = apiFor(emulator);
});
afterAll(async () => {
  api.destroy();
  await emulator.close();
  await source.close();
});

it("a local reader that stops reading holds the session back instead of growing memory, and loses nothing", async () => {
  const limit = 1 << 20;
  const session = await openNativeSession(
    { api, instanceId: emulator.instances()[0]!.instanceId, host: RDS_HOST, port: 5432, clientId: randomUuid(), streamBufferLimit: limit },
    AbortSignal.timeout(10_000),
  );
  const stream = await session.openStream();
  stream.pause();
  stream.write("go");
  // Let the source push as much as it can while nobody reads.
  const deadline = Date.now() + 5_000;
  let last = -1;
  while (Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 200));
    const now = emulator.session(session.id)!.bytesToClient;
    if (now === last) break; // the agent is held back
    last = now;
  }
  // Buffered here: the stream's limit plus what was in flight when reading paused (one websocket read).
  expect(stream.readableLength).toBeLessThan(limit + (4 << 20));
  expect(emulator.session(session.id)!.bytesToClient).toBeLessThan(SIZE);
  const all = readHashed(stream, SIZE);
  stream.resume();
  expect((await all).hash).toBe(sha256(seededBytes(SIZE, 3)));
  stream.destroy();
  await session.close();
}, 60_000);
