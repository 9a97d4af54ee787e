import { createHash, createHmac, pbkdf2Sync, randomBytes, timingSafeEqual } from "node:crypto";

/**
 * The client side of SCRAM-SHA-256 (RFC 5802 / 7677) as PostgreSQL uses it: no channel binding
 * ("n,,"), empty username in the SCRAM exchange (the server uses the startup user).
 * Pure apart from the random nonce, which callers may pass in for tests.
 */
export class ScramClient {
  readonly mechanism = "SCRAM-SHA-256";
  private readonly clientNonce: string;
  private readonly clientFirstBare: string;
  private expectedServerSignature: Buffer | undefined;

  constructor(private readonly password: string, nonce: string = randomBytes(18).toString("base64")) {
    this.clientNonce = nonce;
    this.clientFirstBare = `n=*,r=${nonce}`;
  }

  /** The client-first-message, sent in SASLInitialResponse. */
  clientFirstMessage(): string {
    return `n,,${this.clientFirstBare}`;
  }

  /** Takes the server-first-message; returns the client-final-message. Throws on a malformed or hostile message. */
  clientFinalMessage(serverFirst: string): string {
    const attrs = parseAttributes(serverFirst);
    const nonce = attrs.get("r");
    const salt = attrs.get("s");
    const iterations = Number(attrs.get("i"));
    if (!nonce || !salt || !Number.isInteger(iterations)) throw new Error("SCRAM: malformed server-first-message");
    if (!nonce.startsWith(this.clientNonce) || nonce.length === this.clientNonce.length) {
      throw new Error("SCRAM: server nonce does not extend the client nonce");
    }
    if (iterations < 1 || iterations > 10_000_000) throw new Error(`SCRAM: iteration count ${iterations} out of range`);

    const saltedPassword = pbkdf2Sync(this.password.normalize("NFKC"), Buffer.from(salt, "base64"), iterations, 32, "sha256");
    const clientKey = hmac(saltedPassword, "Client Key");
    const storedKey = createHash("sha256").update(clientKey).digest();
    const clientFinalWithoutProof = `c=biws,r=${nonce}`;
    const authMessage = `${this.clientFirstBare},${serverFirst},${clientFinalWithoutProof}`;
    const clientSignature = hmac(storedKey, authMessage);
    const proof = Buffer.alloc(clientKey.length);
    for (let i = 0; i < proof.length; i++) proof[i] = clientKey[i]! ^ clientSignature[i]!;
    this.expectedServerSignature = hmac(hmac(saltedPassword, "Server Key"), authMessage);
    return `${clientFinalWithoutProof},p=${proof.toString("base64")}`;
  }

  /** Checks the server-final-message: the server must prove it knew the password too. */
  verifyServerFinal(serverFinal: string): void {
    const attrs = parseAttributes(serverFinal);
    const error = attrs.get("e");
    if (error) throw new Error(`SCRAM: server reported ${error}`);
    const signature = attrs.get("v");
    if (!signature || !this.expectedServerSignature) throw new Error("SCRAM: malformed server-final-message");
    const received = Buffer.from(signature, "base64");
    if (received.length !== this.expectedServerSignature.length || !timingSafeEqual(received, this.expectedServerSignature)) {
      throw new Error("SCRAM: server signature does not match");
    }
  }
}

function hmac(key: Buffer, text: string): Buffer {
  return createHmac("sha256", key).update(text).digest();
}

function parseAttributes(message: string): Map<string, string> {
  const attrs = new Map<string, string>();
  for (const part of message.split(",")) {
    const eq = part.indexOf("=");
    if (eq === 1) attrs.set(part[0]!, part.slice(2));
  }
  return attrs;
}

/** PostgreSQL's MD5 password answer: "md5" + md5(md5(password + user) + salt). */
export function md5PasswordAnswer(user: string, password: string, salt: Buffer): string {
  const inner = createHash("md5").update(password + user).digest("hex");
  return "md5" + createHash("md5").update(Buffer.concat([Buffer.from(inner), salt])).digest("hex");
}
