import net from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createCertificateAuthority } from "@rdsd/certs";
import { makeRdsLikeTls, recordingTlsServer, type RdsLikeTls, type RecordingTlsServer } from "@rdsd/testkit";
import { secureUpstream, type UpstreamTarget } from "./upstream-login.js";

// The upstream TLS context (trusted CAs) is built once per target and shared by its connections:
// these tests prove that sharing it never weakens verify-full on later connections.
const HOST = "orders-dev.abc123xyz.eu-west-2.rds.amazonaws.com";

let rds: RdsLikeTls;
let genuine: RecordingTlsServer;
let impostor: RecordingTlsServer;
let otherName: RecordingTlsServer;
let impostorCaPem: string;

beforeAll(async () => {
  rds = await makeRdsLikeTls(HOST);
  const otherCa = await createCertificateAuthority({ commonName: "Impostor CA" });
  impostorCaPem = otherCa.certPem;
  genuine = await recordingTlsServer({ certPem: rds.certPem, keyPem: rds.keyPem });
  impostor = await recordingTlsServer(await otherCa.issueServerCertificate({ dnsNames: [HOST] }));
  otherName = await recordingTlsServer(await rds.ca.issueServerCertificate({ dnsNames: ["billing.def456.eu-west-2.rds.amazonaws.com"] }));
});

afterAll(async () => {
  await Promise.all([genuine?.close(), impostor?.close(), otherName?.close()]);
  await rds?.cleanup();
});

async function secure(server: RecordingTlsServer, target: Pick<UpstreamTarget, "host" | "ca">): Promise<string> {
  const socket = net.connect({ host: "127.0.0.1", port: server.port });
  await new Promise<void>((resolve, reject) => socket.once("connect", resolve).once("error", reject));
  try {
    const tlsSocket = await secureUpstream(socket, target, AbortSignal.timeout(5_000));
    tlsSocket.destroy();
    return "verified";
  } catch (err) {
    return (err as Error).message;
  } finally {
    socket.destroy();
  }
}

describe("upstream TLS context shared by a target's connections", () => {
  it("verifies every connection: genuine ones pass, an impostor or another name fails, in any order", async () => {
    const target = { host: HOST, ca: rds.caPem };
    expect(await secure(genuine, target)).toBe("verified");
    expect(await secure(impostor, target)).toContain(`TLS: certificate of ${HOST} is not signed by a trusted CA`);
    expect(await secure(genuine, target)).toBe("verified");
    expect(await secure(otherName, target)).toBe(`TLS: certificate does not match ${HOST}`);
    expect(await secure(genuine, target)).toBe("verified");
  });

  it("follows a change of the target's CA, and never lends one target's CAs to another", async () => {
    const target = { host: HOST, ca: rds.caPem };
    expect(await secure(genuine, target)).toBe("verified");
    target.ca = impostorCaPem;
    expect(await secure(impostor, target)).toBe("verified");
    expect(await secure(genuine, target)).toContain("is not signed by a trusted CA");
    const other = { host: HOST, ca: rds.caPem };
    expect(await secure(impostor, other)).toContain("is not signed by a trusted CA");
  });
});
