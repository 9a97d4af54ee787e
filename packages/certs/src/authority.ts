import { X509Certificate as NodeX509Certificate, randomBytes, type webcrypto } from "node:crypto";
import * as x509 from "./x509.js";
import { exportPrivateKeyPem, generateKeyPair, importSigningKey, parsePrivateKeyPem, SIGNING_ALGORITHM } from "./keys.js";
import { assertDnsName, assertIpAddress, assertValidDays } from "./names.js";

/** A certificate and its private key, both PEM. keyPem is PKCS#8 and can be given to node:tls as is. */
export interface PemKeyPair {
  certPem: string;
  keyPem: string;
}

export interface ServerCertificateOptions {
  dnsNames: string[];
  ipAddresses?: string[];
  /** Default 365. Never extends past the CA's own expiry. */
  validDays?: number;
  /** Default: the first DNS name, else the first IP address. Clients check the SAN, not this. */
  commonName?: string;
}

export interface CertificateAuthority extends PemKeyPair {
  issueServerCertificate(opts: ServerCertificateOptions): Promise<PemKeyPair>;
}

const DAY_MS = 24 * 60 * 60 * 1000;
/** Certificates start a little in the past so that a client whose clock is behind still accepts them. */
const CLOCK_SKEW_MS = 5 * 60 * 1000;
const DEFAULT_CA_DAYS = 3650;
const DEFAULT_SERVER_DAYS = 365;

/** 16 random bytes, positive and without a leading zero byte, so every ASN.1 encoder agrees on it. */
function randomSerialNumber(): string {
  const bytes = randomBytes(16);
  bytes[0] = (bytes[0]! & 0x7f) | 0x40;
  return bytes.toString("hex");
}

function validityWindow(days: number, notAfterLimit?: Date): { notBefore: Date; notAfter: Date } {
  assertValidDays(days);
  const now = Date.now();
  let notAfter = new Date(now + days * DAY_MS);
  if (notAfterLimit && notAfter > notAfterLimit) notAfter = notAfterLimit;
  return { notBefore: new Date(now - CLOCK_SKEW_MS), notAfter };
}

export async function createCertificateAuthority(opts: { commonName: string; validDays?: number }): Promise<CertificateAuthority> {
  if (!opts.commonName) throw new Error("a certificate authority needs a commonName");
  const keys = await generateKeyPair();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: randomSerialNumber(),
    name: new x509.Name([{ CN: [opts.commonName] }]),
    keys,
    signingAlgorithm: SIGNING_ALGORITHM,
    ...validityWindow(opts.validDays ?? DEFAULT_CA_DAYS),
    extensions: [
      new x509.BasicConstraintsExtension(true, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
      await x509.AuthorityKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return certificateAuthorityFromPem({ certPem: cert.toString("pem"), keyPem: await exportPrivateKeyPem(keys.privateKey) });
}

/** Loads a CA from PEM; checks that the certificate is a CA and that the key belongs to it. */
export async function certificateAuthorityFromPem(pair: PemKeyPair): Promise<CertificateAuthority> {
  let nodeCert: NodeX509Certificate;
  try {
    nodeCert = new NodeX509Certificate(pair.certPem);
  } catch {
    throw new Error("CA certificate is not a readable PEM certificate");
  }
  if (!nodeCert.ca) throw new Error("certificate is not a CA certificate (basicConstraints CA is not true)");
  const privateKey = parsePrivateKeyPem(pair.keyPem);
  if (!nodeCert.checkPrivateKey(privateKey)) throw new Error("CA private key does not match the CA certificate");

  const caCert = new x509.X509Certificate(pair.certPem);
  const signingKey = await importSigningKey(privateKey);
  const caNotAfter = new Date(nodeCert.validTo);
  const certPem = caCert.toString("pem");
  const keyPem = privateKey.export({ type: "pkcs8", format: "pem" }).toString();

  return {
    certPem,
    keyPem,
    issueServerCertificate: (opts) => issueServerCertificate(caCert, signingKey, caNotAfter, opts),
  };
}

async function issueServerCertificate(
  caCert: x509.X509Certificate,
  caSigningKey: webcrypto.CryptoKey,
  caNotAfter: Date,
  opts: ServerCertificateOptions,
): Promise<PemKeyPair> {
  const dnsNames = opts.dnsNames;
  const ipAddresses = opts.ipAddresses ?? [];
  dnsNames.forEach(assertDnsName);
  ipAddresses.forEach(assertIpAddress);
  const commonName = opts.commonName ?? dnsNames[0] ?? ipAddresses[0];
  if (commonName === undefined) throw new Error("a server certificate needs at least one DNS name or IP address");

  const keys = await generateKeyPair();
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: randomSerialNumber(),
    subject: new x509.Name([{ CN: [commonName] }]),
    issuer: caCert.subjectName,
    publicKey: keys.publicKey,
    signingKey: caSigningKey,
    signingAlgorithm: SIGNING_ALGORITHM,
    ...validityWindow(opts.validDays ?? DEFAULT_SERVER_DAYS, caNotAfter),
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
      new x509.SubjectAlternativeNameExtension([
        ...dnsNames.map((value) => ({ type: "dns" as const, value })),
        ...ipAddresses.map((value) => ({ type: "ip" as const, value })),
      ]),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
      await x509.AuthorityKeyIdentifierExtension.create(caCert.publicKey),
    ],
  });
  return { certPem: cert.toString("pem"), keyPem: await exportPrivateKeyPem(keys.privateKey) };
}
