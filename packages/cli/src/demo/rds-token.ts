import { createHash, createHmac, timingSafeEqual } from "node:crypto";

/** What an RDS IAM token must have been signed for, and the key that must have signed it. */
export interface TokenExpectation {
  host: string;
  port: number;
  user: string;
  region: string;
  accessKeyId: string;
  secretAccessKey: string;
  now: Date;
}

const EMPTY_PAYLOAD_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
const MAX_EXPIRES_SECONDS = 900;
const CLOCK_SKEW_MS = 5 * 60_000;

/**
 * Checks an RDS IAM auth token the way the database's IAM plugin does: a SigV4 presigned
 * `GET https://HOST:PORT/?Action=connect&DBUser=USER` for service `rds-db`, signed by the expected key,
 * for this host, port, user and region, and not expired. Pure (the time is an input); returns why it is
 * refused, or null when it is good. Never echoes the token.
 */
export function rdsTokenProblem(token: string, expected: TokenExpectation): string | null {
  const prefix = `${expected.host}:${expected.port}/?`;
  if (!token.startsWith(prefix)) return `the token is not for ${expected.host}:${expected.port}`;
  const params = new URLSearchParams(token.slice(prefix.length));
  const one = (name: string) => (params.getAll(name).length === 1 ? params.get(name)! : undefined);
  if (one("Action") !== "connect") return "the token's Action is not connect";
  if (one("DBUser") !== expected.user) return `the token is for another database user than ${expected.user}`;
  if (one("X-Amz-Algorithm") !== "AWS4-HMAC-SHA256") return "the token is not signed with AWS4-HMAC-SHA256";
  if (one("X-Amz-SignedHeaders") !== "host") return "the token must sign exactly the host header";
  const amzDate = one("X-Amz-Date") ?? "";
  const match = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(amzDate);
  if (!match) return "the token has no valid X-Amz-Date";
  const signedAt = Date.UTC(+match[1]!, +match[2]! - 1, +match[3]!, +match[4]!, +match[5]!, +match[6]!);
  const expires = Number(one("X-Amz-Expires"));
  if (!Number.isInteger(expires) || expires < 1 || expires > MAX_EXPIRES_SECONDS) return "the token's X-Amz-Expires is not 1-900 seconds";
  const now = expected.now.getTime();
  if (signedAt - CLOCK_SKEW_MS > now) return "the token is signed in the future";
  if (now > signedAt + expires * 1000) return "the token has expired";
  const day = amzDate.slice(0, 8);
  const scope = `${day}/${expected.region}/rds-db/aws4_request`;
  if (one("X-Amz-Credential") !== `${expected.accessKeyId}/${scope}`) return "the token is signed by another key, region or service";
  const signature = one("X-Amz-Signature") ?? "";
  if (!/^[0-9a-f]{64}$/.test(signature)) return "the token has no valid signature";

  const canonicalQuery = [...params.entries()]
    .filter(([name]) => name !== "X-Amz-Signature")
    .map(([name, value]) => [escape(name), escape(value)] as const)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([name, value]) => `${name}=${value}`)
    .join("&");
  const canonicalRequest = ["GET", "/", canonicalQuery, `host:${expected.host}:${expected.port}`, "", "host", EMPTY_PAYLOAD_SHA256].join("\n");
  const stringToSign = ["AWS4-HMAC-SHA256", amzDate, scope, sha256Hex(canonicalRequest)].join("\n");
  let key: Buffer = hmac(`AWS4${expected.secretAccessKey}`, day);
  for (const part of [expected.region, "rds-db", "aws4_request"]) key = hmac(key, part);
  const expectedSignature = createHmac("sha256", key).update(stringToSign).digest();
  if (!timingSafeEqual(expectedSignature, Buffer.from(signature, "hex"))) return "the token's signature does not match";
  return null;
}

/** RFC 3986 encoding, as SigV4 wants it. */
function escape(text: string): string {
  return encodeURIComponent(text).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

function sha256Hex(text: string): string {
  return createHash("sha256").update(text).digest("hex");
}

function hmac(key: string | Buffer, data: string): Buffer {
  return createHmac("sha256", key).update(data).digest();
}
