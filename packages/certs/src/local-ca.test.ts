import { webcrypto, X509Certificate } from "node:crypto";
import { mkdtemp, readFile, rm, stat, unlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createCertificateAuthority, loadOrCreateLocalCa } from "./index.js";
import * as x509 from "./x509.js";

let stateDir: string;
beforeEach(async () => {
  stateDir = await mkdtemp(join(tmpdir(), "rdsd-state-"));
});
afterEach(() => rm(stateDir, { recursive: true, force: true }));

const mode = async (path: string) => (await stat(path)).mode & 0o777;

describe("loadOrCreateLocalCa", () => {
  it("creates the CA once with private file modes, then reuses it", async () => {
    const first = await loadOrCreateLocalCa(stateDir);
    expect(first.created).toBe(true);
    expect(first.caPath).toBe(join(stateDir, "local-ca", "ca.pem"));
    expect(await readFile(first.caPath, "utf8")).toBe(first.ca.certPem);
    expect(await readFile(join(stateDir, "local-ca", "ca-key.pem"), "utf8")).toBe(first.ca.keyPem);
    expect(await mode(join(stateDir, "local-ca"))).toBe(0o700);
    expect(await mode(join(stateDir, "local-ca", "ca-key.pem"))).toBe(0o600);
    expect(await mode(first.caPath)).toBe(0o644);
    expect(new X509Certificate(first.ca.certPem).ca).toBe(true);

    const second = await loadOrCreateLocalCa(stateDir);
    expect(second.created).toBe(false);
    expect(second.ca.certPem).toBe(first.ca.certPem);
    // The reloaded CA signs with the same key: its certificates verify against the first CA certificate.
    const leaf = await second.ca.issueServerCertificate({ dnsNames: ["localhost"] });
    expect(new X509Certificate(leaf.certPem).verify(new X509Certificate(first.ca.certPem).publicKey)).toBe(true);
  });

  it("regenerates the CA when a file is missing or unreadable", async () => {
    const original = await loadOrCreateLocalCa(stateDir);
    await unlink(join(stateDir, "local-ca", "ca-key.pem"));
    const afterMissing = await loadOrCreateLocalCa(stateDir);
    expect(afterMissing.created).toBe(true);
    expect(afterMissing.ca.certPem).not.toBe(original.ca.certPem);

    await writeFile(afterMissing.caPath, "not a certificate");
    const afterGarbage = await loadOrCreateLocalCa(stateDir);
    expect(afterGarbage.created).toBe(true);
    expect(await readFile(afterGarbage.caPath, "utf8")).toBe(afterGarbage.ca.certPem);
    expect(await mode(join(stateDir, "local-ca", "ca-key.pem"))).toBe(0o600);
  });

  it("regenerates the CA when the stored key belongs to another certificate", async () => {
    const original = await loadOrCreateLocalCa(stateDir);
    const stranger = await createCertificateAuthority({ commonName: "stranger" });
    await writeFile(join(stateDir, "local-ca", "ca-key.pem"), stranger.keyPem);
    const again = await loadOrCreateLocalCa(stateDir);
    expect(again.created).toBe(true);
    expect(again.ca.certPem).not.toBe(original.ca.certPem);
  });

  it("regenerates an expired CA", async () => {
    const keys = await webcrypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, true, ["sign", "verify"]);
    const expired = await x509.X509CertificateGenerator.createSelfSigned({
      name: "CN=expired",
      keys,
      notBefore: new Date(Date.now() - 10 * 86_400_000),
      notAfter: new Date(Date.now() - 86_400_000),
      extensions: [new x509.BasicConstraintsExtension(true, undefined, true)],
    });
    const pkcs8 = await webcrypto.subtle.exportKey("pkcs8", keys.privateKey);
    const { caPath } = await loadOrCreateLocalCa(stateDir); // creates the directory
    await writeFile(caPath, expired.toString("pem"));
    await writeFile(join(stateDir, "local-ca", "ca-key.pem"), x509.PemConverter.encode(pkcs8, "PRIVATE KEY"));

    const renewed = await loadOrCreateLocalCa(stateDir);
    expect(renewed.created).toBe(true);
    expect(new Date(new X509Certificate(renewed.ca.certPem).validTo).getTime()).toBeGreaterThan(Date.now());
  });

  it("gives concurrent callers one and the same CA", async () => {
    const results = await Promise.all(Array.from({ length: 5 }, () => loadOrCreateLocalCa(stateDir)));
    expect(results.filter((r) => r.created)).toHaveLength(1);
    const onDisk = await readFile(join(stateDir, "local-ca", "ca.pem"), "utf8");
    for (const result of results) expect(result.ca.certPem).toBe(onDisk);
    expect(await readFile(join(stateDir, "local-ca", "ca-key.pem"), "utf8")).toBe(results[0]!.ca.keyPem);
  });
});
