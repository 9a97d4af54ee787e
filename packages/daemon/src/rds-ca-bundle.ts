import { X509Certificate } from "node:crypto";
import { mkdir, readFile, rename, writeFile } from "node:fs/promises";
import https from "node:https";
import { dirname, join } from "node:path";

/** The public RDS CA bundle (all regions): https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/UsingWithRDS.SSL.html */
export const RDS_CA_BUNDLE_URL = "https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem";

const MAX_BUNDLE_BYTES = 2 * 1024 * 1024;

export function rdsCaBundlePath(stateDir: string): string {
  return join(stateDir, "rds-global-bundle.pem");
}

export interface BundleSource {
  /** Default RDS_CA_BUNDLE_URL; $RDSD_RDS_CA_URL overrides it (tests point it at a local server). */
  url?: string;
  /** Extra CAs trusted for the download itself (tests); the system's roots otherwise. */
  ca?: string;
}

/**
 * The RDS CA bundle's PEM text: the copy in the state directory, or, when that is missing or damaged, one
 * downloaded over verified HTTPS and saved there. Refuses anything that is not a PEM list of X.509 certificates.
 */
export async function loadRdsCaBundle(stateDir: string, source: BundleSource = {}): Promise<string> {
  const path = rdsCaBundlePath(stateDir);
  try {
    const saved = await readFile(path, "utf8");
    parseBundle(saved);
    return saved;
  } catch {
    // Missing or damaged: fetch it.
  }
  const url = source.url ?? process.env.RDSD_RDS_CA_URL ?? RDS_CA_BUNDLE_URL;
  let text: string;
  try {
    text = await download(url, source.ca);
    parseBundle(text);
  } catch (err) {
    throw new Error(`download from ${url} failed: ${(err as Error).message}`);
  }
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  const temp = `${path}.${process.pid}.tmp`;
  await writeFile(temp, text, { mode: 0o644 });
  await rename(temp, path);
  return text;
}

/** Splits a PEM bundle and checks every certificate parses. Returns how many there are. */
export function parseBundle(text: string): number {
  const blocks = text.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  if (blocks.length === 0) throw new Error("no PEM certificates in it");
  for (const block of blocks) new X509Certificate(block);
  return blocks.length;
}

function download(url: string, ca?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    if (!url.startsWith("https://")) return reject(new Error("only https:// URLs are allowed"));
    const request = https.get(url, { ...(ca ? { ca } : {}), timeout: 15_000 }, (response) => {
      if (response.statusCode !== 200) {
        response.resume();
        reject(new Error(`HTTP ${response.statusCode}`));
        return;
      }
      const chunks: Buffer[] = [];
      let size = 0;
      response.on("data", (chunk: Buffer) => {
        size += chunk.length;
        if (size > MAX_BUNDLE_BYTES) request.destroy(new Error("bundle larger than 2 MB"));
        else chunks.push(chunk);
      });
      response.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
      response.on("error", reject);
    });
    request.on("timeout", () => request.destroy(new Error("timed out")));
    request.on("error", reject);
  });
}
