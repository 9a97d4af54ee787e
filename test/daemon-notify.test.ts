import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { writeFile } from "node:fs/promises";
import net from "node:net";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadSdNotify } from "@rdsd/sock-diag";
import { freePort, makeRdsLikeTls, notifyReceiver, tempDir, type NotifyReceiver, type RdsLikeTls, type TempDir } from "@rdsd/testkit";

// `rdsd daemon` under a systemd Type=notify unit, as a real process: systemd's notification socket is a real
// Unix datagram socket (an abstract name, as systemd may set it) and the daemon's listeners are real ports.

const RDSD = fileURLToPath(new URL("../packages/cli/bin/rdsd.js", import.meta.url));
const HOST = "orders-dev.abc123xyz.eu-west-2.rds.amazonaws.com";
const addon = loadSdNotify();
const runNative = addon.ok || process.env.RDSD_REQUIRE_NATIVE === "1";

let dir: TempDir;
let rds: RdsLikeTls;
let receiver: NotifyReceiver;
let daemon: ChildProcess | undefined;

beforeAll(async () => {
  dir = await tempDir("rdsd-notify-daemon-");
  rds = await makeRdsLikeTls(HOST);
  receiver = await notifyReceiver(`@rdsd-notify-daemon-${process.pid}-${Date.now()}`);
});

afterAll(async () => {
  if (daemon && daemon.exitCode === null && daemon.signalCode === null) daemon.kill("SIGKILL");
  await receiver?.close();
  await rds?.cleanup();
  await dir?.cleanup();
});

async function writeConfig(path: string, ports: Record<string, number>): Promise<void> {
  const closed = await freePort();
  const targets = Object.entries(ports).map(([name, port]) => `  ${name}:\n    host: ${HOST}\n    listen: "127.0.0.1:${port}"\n    tunnel: { address: "127.0.0.1:${closed}" }\n`);
  await writeFile(path, `defaults:\n  user: app\n  auth: { password: { env: APP_PASSWORD } }\n  tls: { ca: ${rds.caPath} }\n  tunnel: { driver: direct }\ntargets:\n${targets.join("")}`);
}

/** Whether a TCP connection to the port is accepted right now. */
function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, "127.0.0.1");
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(false));
  });
}

const fields = (datagram: string) => datagram.split("\n");

describe.skipIf(!runNative)("rdsd daemon and systemd's notification socket", () => {
  it("sends READY=1 once its listeners accept, STATUS= with target states, RELOADING=1 then READY=1 on SIGHUP, STOPPING=1 on SIGTERM", async () => {
    const ports = { orders: await freePort(), billing: await freePort() };
    const configPath = join(dir.path, "rdsd.yaml");
    await writeConfig(configPath, ports);
    daemon = spawn(process.execPath, [RDSD, "daemon", "--config", configPath], {
      env: { ...process.env, NOTIFY_SOCKET: receiver.address, APP_PASSWORD: "secret", RDSD_STATE_DIR: join(dir.path, "state"), RDSD_RUNTIME_DIR: join(dir.path, "run") },
      stdio: ["ignore", "ignore", "pipe"],
    });
    let stderr = "";
    daemon.stderr!.on("data", (chunk: Buffer) => (stderr += chunk.toString()));

    const ready = await receiver.next((d) => fields(d).includes("READY=1"));
    // The moment systemd hears READY=1, every listener accepts.
    expect(await Promise.all(Object.values(ports).map(accepts))).toEqual([true, true]);
    expect(fields(ready.datagram)).toContain("STATUS=orders ready, billing ready");

    // SIGHUP (systemctl reload): RELOADING=1 first, then READY=1 with the new target listening.
    const added = await freePort();
    await writeConfig(configPath, { ...ports, reports: added });
    daemon.kill("SIGHUP");
    const reloading = await receiver.next((d) => fields(d).includes("RELOADING=1"), ready.index + 1);
    expect(fields(reloading.datagram).some((f) => /^MONOTONIC_USEC=\d+$/.test(f))).toBe(true);
    const readyAgain = await receiver.next((d) => fields(d).includes("READY=1"), reloading.index + 1);
    expect(fields(readyAgain.datagram)).toContain("STATUS=orders ready, billing ready, reports ready");
    expect(await accepts(added)).toBe(true);

    daemon.kill("SIGTERM");
    const [code] = await once(daemon, "exit");
    expect(code, stderr).toBe(0);
    const stopping = receiver.datagrams.findIndex((d, i) => i > readyAgain.index && fields(d).includes("STOPPING=1"));
    expect(stopping, JSON.stringify(receiver.datagrams)).toBeGreaterThan(readyAgain.index);
    expect(stderr).not.toContain("cannot notify systemd");
  });
});
