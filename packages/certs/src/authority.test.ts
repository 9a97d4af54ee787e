import { execFile } from "node:child_process";
import { X509Certificate } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { once } from "node:events";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as tls from "node:tls";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { certificateAuthorityFromPem, createCertificateAuthority, issueLocalhostCertificate, type CertificateAuthority, type PemKeyPair } from "./index.js";

const run = promisify(execFile);

async function openssl(args: string[]): Promise<{ ok: boolean; output: string }> {
  try {
    const { stdout, stderr } = await run("openssl", args);
    return { ok: true, output: stdout + stderr };
  } catch (error) {
    const e = error as { stdout?: string; stderr?: string };
    return { ok: false, output: `${e.stdout ?? ""}${e.stderr ?? ""}` };
  }
}

/** A TLS server that answers every connection with "hello"; resolves with its port. */
async function startTlsServer(pair: PemKeyPair): Promise<{ port: number; close: () => Promise<void> }> {
  const server = tls.createServer({ cert: pair.certPem, key: pair.keyPem }, (socket) => socket.end("hello"));
  server.on("tlsClientError", () => {}); // rejected handshakes are expected in these tests
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  return {
    port: (server.address() as AddressInfo).port,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

/** Connects and reads to the end; resolves with the text or rejects with the TLS error. */
function tlsFetch(options: tls.ConnectionOptions): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect(options);
    let text = "";
    socket.setEncoding("utf8");
    socket.on("data", (chunk: string) => (text += chunk));
    socket.on("end", () => resolve(text));
    socket.on("error", reject);
  });
}

let dir: string;
let ca: CertificateAuthority;
let server: PemKeyPair;
let caPath: string;
let certPath: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "rdsd-certs-"));
  ca = await createCertificateAuthority({ commonName: "Test CA, with comma" });
  server = await issueLocalhostCertificate(ca, ["db.internal.example"]);
  caPath = join(dir, "ca.pem");
  certPath = join(dir, "cert.pem");
  await writeFile(caPath, ca.certPem);
  await writeFile(certPath, server.certPem);
});
afterAll(() => rm(dir, { recursive: true, force: true }));

describe("createCertificateAuthority", () => {
  it("makes a self-signed CA certificate with critical CA basic constraints, cert-signing key usage and key identifiers", async () => {
    const text = (await openssl(["x509", "-in", caPath, "-noout", "-text"])).output;
    expect(text).toMatch(/X509v3 Basic Constraints: critical\s+CA:TRUE/);
    expect(text).toMatch(/X509v3 Key Usage: critical\s+Certificate Sign, CRL Sign/);
    expect(text).toContain("X509v3 Subject Key Identifier");
    expect(text).toContain("X509v3 Authority Key Identifier");
    expect(text).toContain("ecdsa-with-SHA256");
    expect(text).toContain("prime256v1");
    const cert = new X509Certificate(ca.certPem);
    expect(cert.subject).toBe(cert.issuer);
    expect(cert.subject).toBe("CN=Test CA\\, with comma"); // a comma in the name stays one attribute
    expect(cert.verify(cert.publicKey)).toBe(true);
    expect(ca.keyPem).toMatch(/^-----BEGIN PRIVATE KEY-----\n/);
  });

  it("rejects an empty common name", async () => {
    await expect(createCertificateAuthority({ commonName: "" })).rejects.toThrow(/commonName/);
  });
});

describe("issued server certificates", () => {
  it("are accepted by node:tls for the names in the SAN", async () => {
    const srv = await startTlsServer(server);
    try {
      await expect(tlsFetch({ host: "127.0.0.1", port: srv.port, ca: ca.certPem, servername: "localhost" })).resolves.toBe("hello");
      await expect(tlsFetch({ host: "127.0.0.1", port: srv.port, ca: ca.certPem, servername: "db.internal.example" })).resolves.toBe("hello");
      // No servername: Node checks the IP address against the IP SAN entries.
      await expect(tlsFetch({ host: "127.0.0.1", port: srv.port, ca: ca.certPem })).resolves.toBe("hello");
    } finally {
      await srv.close();
    }
  });

  it("are rejected by node:tls for a name not in the SAN, and by a client trusting another CA", async () => {
    const srv = await startTlsServer(server);
    const otherCa = await createCertificateAuthority({ commonName: "Other CA" });
    try {
      await expect(tlsFetch({ host: "127.0.0.1", port: srv.port, ca: ca.certPem, servername: "evil.example" })).rejects.toMatchObject({
        code: "ERR_TLS_CERT_ALTNAME_INVALID",
      });
      await expect(tlsFetch({ host: "127.0.0.1", port: srv.port, ca: otherCa.certPem, servername: "localhost" })).rejects.toMatchObject({
        code: "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
      });
    } finally {
      await srv.close();
    }
  });

  it("verify with OpenSSL as TLS server certificates for their DNS names and IP addresses", async () => {
    const verify = (extra: string[]) => openssl(["verify", "-CAfile", caPath, "-purpose", "sslserver", ...extra, certPath]);
    expect(await verify([])).toMatchObject({ ok: true });
    expect(await verify(["-verify_hostname", "localhost"])).toMatchObject({ ok: true });
    expect(await verify(["-verify_hostname", "db.internal.example"])).toMatchObject({ ok: true });
    expect(await verify(["-verify_ip", "127.0.0.1"])).toMatchObject({ ok: true });
    expect(await verify(["-verify_ip", "::1"])).toMatchObject({ ok: true });
    expect(await verify(["-verify_hostname", "evil.example"])).toMatchObject({ ok: false });
    expect(await verify(["-verify_ip", "10.0.0.1"])).toMatchObject({ ok: false });

    const san = (await openssl(["x509", "-in", certPath, "-noout", "-ext", "subjectAltName"])).output;
    expect(san).toContain("DNS:localhost");
    expect(san).toContain("DNS:db.internal.example");
    expect(san).toContain("IP Address:127.0.0.1");
    expect(san).toContain("IP Address:0:0:0:0:0:0:0:1");
  });

  it("carry leaf constraints, serverAuth usage, a random serial and a start time in the past", async () => {
    const text = (await openssl(["x509", "-in", certPath, "-noout", "-text"])).output;
    expect(text).toMatch(/X509v3 Basic Constraints: critical\s+CA:FALSE/);
    expect(text).toMatch(/X509v3 Key Usage: critical\s+Digital Signature/);
    expect(text).toMatch(/X509v3 Extended Key Usage:\s+TLS Web Server Authentication/);
    const cert = new X509Certificate(server.certPem);
    expect(cert.ca).toBe(false);
    expect(cert.checkIssued(new X509Certificate(ca.certPem))).toBe(true);
    expect(new Date(cert.validFrom).getTime()).toBeLessThan(Date.now() - 60_000);
    const again = new X509Certificate((await issueLocalhostCertificate(ca)).certPem);
    expect(again.serialNumber).not.toBe(cert.serialNumber);
    expect(again.serialNumber).toMatch(/^[0-9A-F]{32}$/);
  });

  it("never outlive the CA that signed them", async () => {
    const shortCa = await createCertificateAuthority({ commonName: "Short CA", validDays: 2 });
    const leaf = await shortCa.issueServerCertificate({ dnsNames: ["a.example"], validDays: 365 });
    expect(new X509Certificate(leaf.certPem).validTo).toBe(new X509Certificate(shortCa.certPem).validTo);
  });

  it("refuse malformed names and empty name lists", async () => {
    await expect(ca.issueServerCertificate({ dnsNames: ["bad name"] })).rejects.toThrow(/invalid DNS name/);
    await expect(ca.issueServerCertificate({ dnsNames: ["-x.example"] })).rejects.toThrow(/invalid DNS name/);
    await expect(ca.issueServerCertificate({ dnsNames: [], ipAddresses: ["999.1.1.1"] })).rejects.toThrow(/invalid IP/);
    await expect(ca.issueServerCertificate({ dnsNames: [] })).rejects.toThrow(/at least one/);
    await expect(ca.issueServerCertificate({ dnsNames: ["a.example"], validDays: 0 })).rejects.toThrow(/validDays/);
  });
});

describe("certificateAuthorityFromPem", () => {
  it("restores a CA that issues certificates verifiable against the original CA certificate", async () => {
    const restored = await certificateAuthorityFromPem({ certPem: ca.certPem, keyPem: ca.keyPem });
    expect(restored.certPem).toBe(ca.certPem);
    const leaf = await restored.issueServerCertificate({ dnsNames: ["restored.example"] });
    expect(new X509Certificate(leaf.certPem).verify(new X509Certificate(ca.certPem).publicKey)).toBe(true);
  });

  it("refuses a key that does not belong to the certificate, a non-CA certificate and garbage", async () => {
    const other = await createCertificateAuthority({ commonName: "Other" });
    await expect(certificateAuthorityFromPem({ certPem: ca.certPem, keyPem: other.keyPem })).rejects.toThrow(/does not match/);
    await expect(certificateAuthorityFromPem(server)).rejects.toThrow(/not a CA/);
    await expect(certificateAuthorityFromPem({ certPem: "garbage", keyPem: ca.keyPem })).rejects.toThrow(/not a readable PEM certificate/);
    await expect(certificateAuthorityFromPem({ certPem: ca.certPem, keyPem: "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n" })).rejects.toThrow(
      /not a readable PEM private key/,
    );
  });
});
