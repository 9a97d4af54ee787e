import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MessageType, PayloadType } from "@rdsd/ssm-protocol";
import { echoServer, readBytes, seededBytes } from "@rdsd/testkit";
import { startEmulator } from "./emulator.js";
import type { Emulator } from "./emulator.js";
import { collectOutput, connectedClient, RDS_HOST } from "./testing/helpers.js";

let echo: Awaited<ReturnType<typeof echoServer>>;
beforeAll(async () => {
  echo = await echoServer();
});
afterAll(async () => {
  await echo.close();
});

async function withEmulator<T>(pacing: boolean, fn: (e: Emulator) => Promise<T>): Promise<T> {
  const emulator = await startEmulator({ pacing, hostMap: [`${RDS_HOST}=127.0.0.1:${echo.port}`] });
  try {
    return await fn(emulator);
  } finally {
    await emulator.close();
  }
}

describe("pacing", () => {
  it("by default sends at most 1024 payload bytes per message with a pause after each, like the real agent", async () => {
    await withEmulator(true, async (emulator) => {
      const { client } = await connectedClient(emulator, { clientVersion: "1.1.61.0" });
      try {
        const size = 256 * 1024;
        const data = seededBytes(size, 3);
        const back = collectOutput(client, size);
        const started = performance.now();
        client.sendOutput(data);
        expect((await back).equals(data)).toBe(true);
        const seconds = (performance.now() - started) / 1000;
        const outputs = client.log.filter((m) => m.type === MessageType.OutputStreamData && m.payloadType === PayloadType.Output);
        expect(Math.max(...outputs.map((m) => m.size))).toBe(1024);
        expect(outputs.length).toBeGreaterThanOrEqual(size / 1024);
        // 256 messages, each followed by at least 1 ms: no faster than about 1 MB/s.
        expect(size / seconds).toBeLessThan(1.05 * 1024 * 1024);
        console.log(`paced download: ${(size / seconds / 1e6).toFixed(2)} MB/s`);
      } finally {
        client.close();
      }
    });
  });

  it("paces the session's data channel, not each stream: 4 parallel streams through one session share one ~1 MB/s budget", async () => {
    await withEmulator(true, async (emulator) => {
      const { client } = await connectedClient(emulator);
      try {
        expect(client.multiplexed).toBe(true);
        const streams = 4;
        const size = 128 * 1024;
        const started = performance.now();
        const intact = await Promise.all(
          Array.from({ length: streams }, async (_, i) => {
            const stream = client.openStream();
            const data = seededBytes(size, 10 + i);
            const back = readBytes(stream, size);
            stream.write(data);
            const ok = (await back).equals(data);
            stream.destroy();
            return ok;
          }),
        );
        const seconds = (performance.now() - started) / 1000;
        expect(intact).toEqual([true, true, true, true]);
        const outputs = client.log.filter((m) => m.type === MessageType.OutputStreamData && m.payloadType === PayloadType.Output);
        expect(Math.max(...outputs.map((m) => m.size))).toBeLessThanOrEqual(1024);
        // One pacer per data channel: 512 kB plus smux headers need at least 512 messages 1 ms apart, so the four
        // together stay under ~1 MB/s. Pacing each stream on its own would let them reach ~4 MB/s.
        const total = streams * size;
        expect(total / seconds).toBeLessThan(1.05 * 1024 * 1024);
        console.log(`paced download, ${streams} streams through one session: ${(total / seconds / 1e6).toFixed(2)} MB/s together`);
      } finally {
        client.close();
      }
    });
  });

  it("with pacing off sends pieces of up to 32 kB, not 1024 bytes (no ~1 MB/s ceiling)", async () => {
    await withEmulator(false, async (emulator) => {
      const { client } = await connectedClient(emulator);
      try {
        const stream = client.openStream();
        const size = 8 << 20;
        const data = seededBytes(size, 5);
        const started = performance.now();
        const back = readBytes(stream, size);
        stream.write(data);
        expect((await back).equals(data)).toBe(true);
        const seconds = (performance.now() - started) / 1000;
        const outputs = client.log.filter((m) => m.type === MessageType.OutputStreamData && m.payloadType === PayloadType.Output);
        // Pieces of up to 32 kB: far fewer messages than the size / 1024 that pacing needs. Speed is for bench/.
        expect(Math.max(...outputs.map((m) => m.size))).toBeGreaterThan(1024);
        expect(Math.max(...outputs.map((m) => m.size))).toBeLessThanOrEqual(32 << 10);
        expect(outputs.length).toBeLessThan(size / 1024 / 4);
        console.log(`unpaced echo: ${((2 * size) / seconds / 1e6).toFixed(1)} MB/s (both directions together; information, not asserted)`);
      } finally {
        client.close();
      }
    });
  });
});
