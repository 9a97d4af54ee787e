import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startEmulator } from "@rdsd/ssm-emulator";
import type { Emulator } from "@rdsd/ssm-emulator";
import { randomUuid } from "@rdsd/ssm-protocol";
import { openNativeSession } from "../src/native-session.js";
import type { NativeSession } from "../src/native-session.js";
import type { SsmApi } from "../src/ssm-api.js";
import { echoServer, readHashed, seededBytes } from "@rdsd/testkit";
import type { TcpServer } from "@rdsd/testkit";
import { apiFor, RDS_HOST, sha256 } from "./helpers.js";

let emulator: Emulator;
let echo: TcpServer;
let api: SsmApi;
const clientId = randomUuid();

beforeAll(async () => {
  echo = await echoServer();
  emulator = await startEmulator({ pacing: false, hostMap: [`${RDS_HOST}=127.0.0.1:${echo.port}`] });
  api = apiFor(emulator);
});
afterAll(async () => {
  await emulator.close();
  await echo.close();
  api.destroy();
});

function open(): Promise<NativeSession> {
  return openNativeSession({ api, instanceId: emulator.instances()[0]!.instanceId, host: RDS_HOST, port: 5432, clientId }, AbortSignal.timeout(10_000));
}

describe("native session against the emulator", () => {
  it("multiplexes: bytes go through a smux stream and come back intact", async () => {
    const session = await open();
    expect(session.singleUse).toBe(false);
    expect(emulator.session(session.id)?.mode).toBe("multiplexed");
    const stream = await session.openStream();
    const data = seededBytes(200_000);
    const back = readHashed(stream, data.length);
    stream.write(data);
    expect((await back).hash).toBe(sha256(data));
    stream.destroy();
    await session.close();
    expect(emulator.session(session.id)?.state).toBe("Terminated");
  });
});
