import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startEmulator } from "@rdsd/ssm-emulator";
import type { Emulator } from "@rdsd/ssm-emulator";
import type { Tunnel } from "../src/tunnel.js";
import { readHashed, seededBytes, tcpServer } from "@rdsd/testkit";
import type { TcpServer } from "@rdsd/testkit";
import { RDS_HOST, sha256, writeAll } from "./helpers.js";
import { target, tunnelFor, waitForState } from "./tunnel-helpers.js";

// The probe is not what is measured here: the "database" is an echo server that answers SSLRequest.
let echo: TcpServer;
let download: TcpServer;
const DOWNLOAD_BYTES = 200_000;

beforeAll(async () => {
  echo = await tcpServer((s) => {
    let first = true;
    s.on("data", (c: Buffer) => {
      if (first && c.length >= 8 && c.readUInt32BE(4) === 80877103) {
        first = false;
        s.write("S");
        if (c.length > 8) s.write(c.subarray(8));
        return;
      }
      first = false;
      s.write(c);
    });
  });
  // Answers SSLRequest with 'S'; any other first byte starts a download of DOWNLOAD_BYTES.
  download = await tcpServer((s) => {
    s.once("data", (c: Buffer) => {
      if (c.length === 8 && c.readUInt32BE(4) === 80877103) s.write("S");
      else s.end(seededBytes(DOWNLOAD_BYTES, 7));
    });
  });
});
afterAll(async () => {
  await echo.close();
  await download.close();
});

async function startTunnel(emulator: Emulator, sessions: number): Promise<Tunnel> {
  const t = tunnelFor(emulator, target({ tunnel: { sessions } }), { supervisor: { livenessIntervalMs: 60_000 } });
  t.start();
  await waitForState(t, "ready", 15_000);
  return t;
}

describe("throughput (emulator without pacing)", () => {
  let emulator: Emulator;
  let tunnel: Tunnel;
  beforeAll(async () => {
    emulator = await startEmulator({ pacing: false, hostMap: [`${RDS_HOST}=127.0.0.1:${echo.port}`] });
    tunnel = await startTunnel(emulator, 1);
  });
  afterAll(async () => {
    await tunnel.stop();
    expect(emulator.sessions({ active: true })).toEqual([]);
    await emulator.close();
  });

  it("carries 100 parallel connections through one session, each intact", async () => {
    const streams = await Promise.all(Array.from({ length: 100 }, () => tunnel.dialer.dial(AbortSignal.timeout(10_000))));
    expect(tunnel.status().sessions).toHaveLength(1);
    expect(tunnel.status().connections).toBe(100);
    const results = await Promise.all(
      streams.map(async (stream, i) => {
        const data = seededBytes(20_000, i + 1);
        const back = readHashed(stream, data.length);
        await writeAll(stream, data);
        const got = await back;
        stream.destroy();
        return got.hash === sha256(data);
      }),
    );
    expect(results.filter(Boolean)).toHaveLength(100);
    expect(emulator.sessions({ active: true })).toHaveLength(1);
  });

  it("carries 50 MB through one connection intact (SHA-256)", async () => {
    const data = seededBytes(50 << 20, 42);
    const stream = await tunnel.dialer.dial(AbortSignal.timeout(10_000));
    const started = performance.now();
    const back = readHashed(stream, data.length);
    await writeAll(stream, data);
    const got = await back;
    const seconds = (performance.now() - started) / 1000;
    stream.destroy();
    expect(got.hash).toBe(sha256(data));
    console.log(`50 MB echoed through one connection (50 MB each way) in ${seconds.toFixed(2)} s: ${(50 / seconds).toFixed(1)} MB/s per direction`);
  }, 120_000);
});

describe("throughput (emulator with the agent's pacing)", () => {
  let emulator: Emulator;
  beforeAll(async () => {
    emulator = await startEmulator({ pacing: true, hostMap: [`${RDS_HOST}=127.0.0.1:${download.port}`] });
  });
  afterAll(async () => {
    expect(emulator.sessions({ active: true })).toEqual([]);
    await emulator.close();
  });

  /** `parallel` connections each download DOWNLOAD_BYTES at once; every download must arrive intact. Returns seconds. */
  async function parallelDownload(tunnel: Tunnel, parallel: number): Promise<number> {
    const streams = await Promise.all(Array.from({ length: parallel }, () => tunnel.dialer.dial(AbortSignal.timeout(10_000))));
    const started = performance.now();
    const hashes = await Promise.all(
      streams.map((s) => {
        const r = readHashed(s, DOWNLOAD_BYTES);
        s.write("go");
        return r;
      }),
    );
    const seconds = (performance.now() - started) / 1000;
    for (const s of streams) s.destroy();
    const expected = sha256(seededBytes(DOWNLOAD_BYTES, 7));
    expect(hashes.map((h) => h.hash)).toEqual(Array.from({ length: parallel }, () => expected));
    return seconds;
  }

  /** Bytes the emulator's agent sent to the client on each of the tunnel's sessions while `run` ran. */
  async function bytesPerSession(tunnel: Tunnel, run: () => Promise<number>): Promise<{ carried: number[]; seconds: number }> {
    const ids = tunnel.status().sessionIds;
    const sent = () => ids.map((id) => emulator.session(id)!.bytesToClient);
    const before = sent();
    const seconds = await run();
    return { carried: sent().map((after, i) => after - before[i]!), seconds };
  }

  // What makes N sessions faster is that the agent paces each session's data channel on its own (~1 MB/s):
  // N parallel transfers must land on N different sessions. The speed-up itself is measured in bench/.
  it("spreads N parallel transfers over N distinct SSM sessions, one each; one session carries them all", async () => {
    const N = 3;
    const one = await startTunnel(emulator, 1);
    const many = await startTunnel(emulator, N);
    try {
      const manyIds = many.status().sessionIds;
      expect(new Set(manyIds).size).toBe(N);
      expect(emulator.sessions({ active: true }).map((s) => s.sessionId).sort()).toEqual([...one.status().sessionIds, ...manyIds].sort());

      const spread = await bytesPerSession(many, () => parallelDownload(many, N));
      // Each session carried exactly one download: its bytes plus the protocol's framing, never two of them.
      for (const bytes of spread.carried) {
        expect(bytes).toBeGreaterThanOrEqual(DOWNLOAD_BYTES);
        expect(bytes).toBeLessThan(2 * DOWNLOAD_BYTES);
      }
      const single = await bytesPerSession(one, () => parallelDownload(one, N));
      expect(single.carried).toHaveLength(1);
      expect(single.carried[0]).toBeGreaterThanOrEqual(N * DOWNLOAD_BYTES);

      const mb = (N * DOWNLOAD_BYTES) / 1e6;
      console.log(
        `${N} parallel downloads of ${DOWNLOAD_BYTES / 1e3} kB under pacing (information, not asserted): ` +
          `1 session ${single.seconds.toFixed(2)} s (${(mb / single.seconds).toFixed(2)} MB/s), ${N} sessions ${spread.seconds.toFixed(2)} s (${(mb / spread.seconds).toFixed(2)} MB/s)`,
      );
    } finally {
      await one.stop();
      await many.stop();
    }
  });
});
