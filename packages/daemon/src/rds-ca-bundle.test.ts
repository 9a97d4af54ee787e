import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import https from "node:https";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createCertificateAuthority, type CertificateAuthority } from "@rdsd/certs";
import { loadRdsCaBundle, rdsCaBundlePath } from "./rds-ca-bundle.js";

// A local HTTPS server stands in for truststore.pki.rds.amazonaws.com; the download is verified against its CA.
let serverCa: CertificateAuthority;
let bundle: string;
let server: https.Server;
let requests: string[] = [];
let base: string;
let dir: string;

beforeAll(async () => {
  serverCa = await createCertificateAuthority({ commonName: "test download CA" });
  const rdsLike = await createCertificateAuthority({ commonName: "Amazon RDS test Root CA" });
  bundle = `${rdsLike.certPem}${serverCa.certPem}`;
  const cert = await serverCa.issueServerCertificate({ dnsNames: ["localhost"], ipAddresses: ["127.0.0.1"] });
  server = https.createServer({ cert: cert.certPem, key: cert.keyPem }, (req, res) => {
    requests.push(req.url ?? "");
    if (req.url === "/global-bundle.pem") res.end(bundle);
    else if (req.url === "/not-pem") res.end("<html>maintenance</html>");
    else res.writeHead(404).end();
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  base = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
  dir = await mkdtemp(join(tmpdir(), "rdsd-bundle-"));
});

afterAll(async () => {
  server?.close();
  await rm(dir, { recursive: true, force: true });
});

describe("loadRdsCaBundle", () => {
  it("downloads the bundle once over verified HTTPS into the state directory", async () => {
    requests = [];
    const state = join(dir, "once");
    expect(await loadRdsCaBundle(state, { url: `${base}/global-bundle.pem`, ca: serverCa.certPem })).toBe(bundle);
    expect(await readFile(rdsCaBundlePath(state), "utf8")).toBe(bundle);
    expect(await loadRdsCaBundle(state, { url: `${base}/global-bundle.pem`, ca: serverCa.certPem })).toBe(bundle);
    expect(requests).toEqual(["/global-bundle.pem"]);
  });

  it("refuses a server it cannot verify, plain http, errors and non-PEM answers, writing nothing", async () => {
    const state = join(dir, "refused");
    await expect(loadRdsCaBundle(state, { url: `${base}/global-bundle.pem` })).rejects.toThrow(/self-signed|unable to (verify|get)/i);
    await expect(loadRdsCaBundle(state, { url: `http://127.0.0.1:1/x.pem` })).rejects.toThrow("only https:// URLs are allowed");
    await expect(loadRdsCaBundle(state, { url: `${base}/missing`, ca: serverCa.certPem })).rejects.toThrow("HTTP 404");
    await expect(loadRdsCaBundle(state, { url: `${base}/not-pem`, ca: serverCa.certPem })).rejects.toThrow("no PEM certificates in it");
    await expect(readFile(rdsCaBundlePath(state))).rejects.toMatchObject({ code: "ENOENT" });
  });

  it("replaces a damaged bundle on disk", async () => {
    const state = join(dir, "damaged");
    await loadRdsCaBundle(state, { url: `${base}/global-bundle.pem`, ca: serverCa.certPem });
    await writeFile(rdsCaBundlePath(state), "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n");
    expect(await loadRdsCaBundle(state, { url: `${base}/global-bundle.pem`, ca: serverCa.certPem })).toBe(bundle);
    expect(await readFile(rdsCaBundlePath(state), "utf8")).toBe(bundle);
  });
});
