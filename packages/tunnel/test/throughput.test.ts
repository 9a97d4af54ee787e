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
const DOWNLOAD_BYTES = 600_000;

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
  const t = tunnelFor(emulator, target({ tunnel: { sessions } }), { supervisor: { probeIntervalMs: 60_000 } });
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

  /** Seconds for `parallel` connections to each download DOWNLOAD_BYTES. */
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
    expect(hashes.every((h) => h.hash === expected)).toBe(true);
    return seconds;
  }

  it("N sessions are measurably faster than one for N parallel transfers", async () => {
    const N = 3;
    const one = await startTunnel(emulator, 1);
    const many = await startTunnel(emulator, N);
    // Best of two rounds each, interleaved: the machine is shared, and load only ever makes a run slower.
    let oneSeconds = Infinity;
    let manySeconds = Infinity;
    for (let round = 0; round < 2; round++) {
      oneSeconds = Math.min(oneSeconds, await parallelDownload(one, N));
      manySeconds = Math.min(manySeconds, await parallelDownload(many, N));
    }
    await one.stop();
    await many.stop();
    const mb = (N * DOWNLOAD_BYTES) / 1e6;
    console.log(
      `${N} parallel downloads of ${DOWNLOAD_BYTES / 1e3} kB under pacing: 1 session ${oneSeconds.toFixed(2)} s (${(mb / oneSeconds).toFixed(2)} MB/s), ` +
        `${N} sessions ${manySeconds.toFixed(2)} s (${(mb / manySeconds).toFixed(2)} MB/s), x${(oneSeconds / manySeconds).toFixed(2)}`,
    );
    // Ideal is x3 (the agent paces each session); x2.6-2.9 is typical here.
    expect(oneSeconds / manySeconds).toBeGreaterThan(1.8);
  }, 90_000);
});
