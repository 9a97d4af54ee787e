import { randomBytes, X509Certificate as NodeX509Certificate } from "node:crypto";
import { chmod, mkdir, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { setTimeout as delay } from "node:timers/promises";
import { certificateAuthorityFromPem, createCertificateAuthority, type CertificateAuthority, type PemKeyPair } from "./authority.js";

const LOCAL_CA_COMMON_NAME = "rdsd local CA";
const LOCK_WAIT_MS = 15_000;
/** The lock is held for the few milliseconds it takes to generate and write a CA; older than this means its holder died. */
const STALE_LOCK_MS = 10_000;
const LOCK_POLL_MS = 20;

export interface LocalCa {
  ca: CertificateAuthority;
  /** The CA certificate the user trusts (sslrootcert=...). */
  caPath: string;
  created: boolean;
}

/** Where the local CA's certificate is (or will be) kept in a state dir. */
export function localCaPath(stateDir: string): string {
  return join(stateDir, "local-ca", "ca.pem");
}

/**
 * Returns rdsd's local CA from <stateDir>/local-ca, creating it on first use or when the stored one is
 * missing, unreadable, mismatched or expired. Concurrent callers (threads of one process or several
 * processes) serialize on a lock directory, so they all end up with the same CA.
 */
export async function loadOrCreateLocalCa(stateDir: string): Promise<LocalCa> {
  const dir = join(stateDir, "local-ca");
  const caPath = localCaPath(stateDir);
  const keyPath = join(dir, "ca-key.pem");
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await chmod(dir, 0o700); // mkdir leaves an existing directory's mode alone

  const existing = await tryLoad(caPath, keyPath);
  if (existing) return { ca: existing, caPath, created: false };

  return withLock(join(dir, ".lock"), async () => {
    // Another caller may have created it while we waited for the lock.
    const created = await tryLoad(caPath, keyPath);
    if (created) return { ca: created, caPath, created: false };
    const ca = await createCertificateAuthority({ commonName: LOCAL_CA_COMMON_NAME });
    // Key first: a crash between the two renames leaves a mismatched pair, which the next load regenerates.
    await writeAtomically(keyPath, ca.keyPem, 0o600);
    await writeAtomically(caPath, ca.certPem, 0o644);
    return { ca, caPath, created: true };
  });
}

/** The certificate the proxy presents on localhost. */
export function issueLocalhostCertificate(ca: CertificateAuthority, extraDnsNames: string[] = []): Promise<PemKeyPair> {
  const dnsNames = [...new Set(["localhost", ...extraDnsNames])];
  return ca.issueServerCertificate({ dnsNames, ipAddresses: ["127.0.0.1", "::1"], commonName: "localhost" });
}

async function tryLoad(caPath: string, keyPath: string): Promise<CertificateAuthority | undefined> {
  let pair: PemKeyPair;
  try {
    pair = { certPem: await readFile(caPath, "utf8"), keyPem: await readFile(keyPath, "utf8") };
  } catch {
    return undefined;
  }
  try {
    const cert = new NodeX509Certificate(pair.certPem);
    if (new Date(cert.validTo).getTime() <= Date.now()) return undefined;
    return await certificateAuthorityFromPem(pair);
  } catch {
    return undefined;
  }
}

async function writeAtomically(path: string, content: string, mode: number): Promise<void> {
  const temp = `${path}.${process.pid}.${randomBytes(6).toString("hex")}.tmp`;
  try {
    await writeFile(temp, content, { mode, flag: "wx" });
    await chmod(temp, mode); // the umask may have removed bits we want (0644)
    await rename(temp, path);
  } catch (error) {
    await rm(temp, { force: true });
    throw error;
  }
}

/** mkdir is atomic across processes: whoever creates the directory holds the lock. */
async function withLock<T>(lockDir: string, action: () => Promise<T>): Promise<T> {
  const deadline = Date.now() + LOCK_WAIT_MS;
  for (;;) {
    try {
      await mkdir(lockDir);
      break;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
    }
    if (await isStale(lockDir)) {
      await rm(lockDir, { recursive: true, force: true });
      continue;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for the local CA lock ${lockDir}`);
    // No cross-process event announces the release of a lock directory: poll until the deadline.
    await delay(LOCK_POLL_MS);
  }
  try {
    return await action();
  } finally {
    await rm(lockDir, { recursive: true, force: true });
  }
}

async function isStale(lockDir: string): Promise<boolean> {
  try {
    return Date.now() - (await stat(lockDir)).mtimeMs > STALE_LOCK_MS;
  } catch {
    return false; // released meanwhile: the next mkdir will tell
  }
}
