import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { createCertificateAuthority, type CertificateAuthority } from "@rdsd/certs";
import { tempDir } from "./temp.js";

export interface RdsLikeTls {
  caPem: string;
  /** The CA certificate in a temp file (removed at process exit), for sslrootcert=... and other tools. */
  caPath: string;
  certPem: string;
  keyPem: string;
  /** The test CA itself, to issue more certificates (for example for a wrong host name). */
  ca: CertificateAuthority;
  /** Removes caPath's temp directory (otherwise removed when the process exits normally). */
  cleanup(): Promise<void>;
}

/** A fresh test CA standing in for the RDS CA bundle, and a server certificate for an RDS-shaped host name. */
export async function makeRdsLikeTls(hostname: string): Promise<RdsLikeTls> {
  const ca = await createCertificateAuthority({ commonName: "Test RDS Root CA" });
  const server = await ca.issueServerCertificate({ dnsNames: [hostname] });
  const dir = await tempDir("rdsd-rds-ca-");
  const caPath = join(dir.path, "rds-ca.pem");
  await writeFile(caPath, ca.certPem);
  return { caPem: ca.certPem, caPath, certPem: server.certPem, keyPem: server.keyPem, ca, cleanup: dir.cleanup };
}
