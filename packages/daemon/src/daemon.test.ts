import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createCertificateAuthority } from "@rdsd/certs";
import { freePort, tcpServer, tempDir, type TcpServer, type TempDir } from "@rdsd/testkit";
import { Daemon } from "./daemon.js";
import { createLogger } from "./logger.js";
import { rdsCaBundlePath } from "./rds-ca-bundle.js";

// Targets with `tls: { ca: rds }` and no bundle on disk: each start of a target needs the bundle, and a
// download attempt shows up as a connection to a stand-in for the bundle's address that hangs up at once.

const TARGETS = ["a", "b", "c"];
let dir: TempDir;
let bundleHost: TcpServer;
let daemon: Daemon;
const savedUrl = process.env.RDSD_RDS_CA_URL;

beforeAll(async () => {
  dir = await tempDir("rdsd-daemon-");
  bundleHost = await tcpServer((socket) => socket.destroy());
  process.env.RDSD_RDS_CA_URL = `https://127.0.0.1:${bundleHost.port}/global-bundle.pem`;
  const targets = [];
  for (const name of TARGETS) {
    targets.push(
      `  ${name}:`,
      `    host: ${name}.abc123xyz.eu-west-2.rds.amazonaws.com`,
      `    listen: "127.0.0.1:${await freePort()}"`,
      `    user: app`,
      `    auth: { password: { env: RDSD_DAEMON_TEST_PASSWORD } }`,
      `    tls: { ca: rds }`,
      `    tunnel: { driver: direct, address: "127.0.0.1:1" }`,
    );
  }
  const configPath = join(dir.path, "rdsd.yaml");
  await writeFile(configPath, ["aws: { region: eu-west-2 }", "targets:", ...targets, ""].join("\n"));
  daemon = new Daemon({ configPath, stateDir: join(dir.path, "state"), logger: createLogger({ console: false }) });
});

afterAll(async () => {
  await daemon?.stop();
  await bundleHost?.close();
  await dir?.cleanup();
  if (savedUrl === undefined) delete process.env.RDSD_RDS_CA_URL;
  else process.env.RDSD_RDS_CA_URL = savedUrl;
});

describe("Daemon and the RDS CA bundle", () => {
  it("loads it once for targets starting together, and afresh on a restart", async () => {
    await daemon.start();
    expect(bundleHost.connections).toHaveLength(1);
    for (const status of daemon.targetStatus()) {
      expect(status.lastError?.message, status.name).toMatch(/^the RDS CA bundle is not available: download from https:\/\/127\.0\.0\.1:\d+\/global-bundle\.pem failed/);
    }

    // A restart after start-up loads it again: still missing, so another attempt.
    await daemon.restart("a");
    expect(bundleHost.connections).toHaveLength(2);

    // Once a good bundle is on disk, a restart takes it from there: no download, no error.
    const ca = await createCertificateAuthority({ commonName: "Amazon RDS test Root CA" });
    await writeFile(rdsCaBundlePath(join(dir.path, "state")), ca.certPem);
    await daemon.restart();
    expect(bundleHost.connections).toHaveLength(2);
    expect(daemon.targetStatus().map((t) => t.lastError)).toEqual([null, null, null]);
  });
});
