import { createHash, createHmac, timingSafeEqual } from "node:crypto";
import type { IncomingHttpHeaders } from "node:http";
import { SignatureV4 } from "@smithy/signature-v4";
import type { Checksum, SourceData } from "@smithy/types";
import { awsErrors } from "./aws-errors.js";

export interface KnownCredential {
  accessKeyId: string;
  secretAccessKey: string;
  /** The AWS account the key belongs to (12 digits); default DEFAULT_ACCOUNT. Sessions and instances are per account. */
  account?: string;
  /** Operations this identity may not call (answered with AccessDeniedException). */
  deniedOperations?: string[];
}

export interface SignedRequest {
  method: string;
  path: string;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

/** Node's hash and HMAC behind the Checksum interface the signer wants. */
class NodeSha256 implements Checksum {
  private readonly hash;
  constructor(secret?: SourceData) {
    this.hash = secret === undefined ? createHash("sha256") : createHmac("sha256", toBuffer(secret));
  }
  update(data: Uint8Array): void {
    this.hash.update(data);
  }
  async digest(): Promise<Uint8Array> {
    return this.hash.digest();
  }
  reset(): void {
    throw new Error("not supported");
  }
}

function toBuffer(data: SourceData): Buffer {
  if (typeof data === "string") return Buffer.from(data, "utf8");
  if (ArrayBuffer.isView(data)) return Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  return Buffer.from(data);
}

const AUTH_PATTERN =
  /^AWS4-HMAC-SHA256 Credential=([^/,\s]+)\/(\d{8})\/([^/,\s]+)\/([^/,\s]+)\/aws4_request,\s*SignedHeaders=([^,\s]+),\s*Signature=([0-9a-f]{64})$/;
const MAX_CLOCK_SKEW_MS = 15 * 60 * 1000;

/**
 * Checks a request's SigV4 Authorization header: a known access key, the expected region and service,
 * a fresh date, and a signature that matches ours computed with the known secret.
 * Returns the matching credential or throws the AwsError the service would answer.
 */
export async function verifySigV4(
  request: SignedRequest,
  known: readonly KnownCredential[],
  expected: { region: string; service: string },
  now = Date.now(),
): Promise<KnownCredential> {
  const authorization = request.headers.authorization;
  if (typeof authorization !== "string" || authorization === "") throw awsErrors.missingAuthentication();
  const match = AUTH_PATTERN.exec(authorization.trim());
  if (!match) throw awsErrors.invalidSignature("Authorization header requires a valid AWS4-HMAC-SHA256 credential, SignedHeaders and Signature.");
  const [, accessKeyId, scopeDate, region, service, signedHeaderList, signature] = match as unknown as string[];
  const credential = known.find((c) => c.accessKeyId === accessKeyId);
  if (!credential) throw awsErrors.unrecognizedClient();
  if (region !== expected.region) {
    throw awsErrors.invalidSignature(`Credential should be scoped to a valid region. `);
  }
  if (service !== expected.service) {
    throw awsErrors.invalidSignature(`Credential should be scoped to correct service: '${expected.service}'. `);
  }
  const amzDate = request.headers["x-amz-date"];
  if (typeof amzDate !== "string" || !/^\d{8}T\d{6}Z$/.test(amzDate)) {
    throw awsErrors.invalidSignature("Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.");
  }
  const signingDate = new Date(
    `${amzDate.slice(0, 4)}-${amzDate.slice(4, 6)}-${amzDate.slice(6, 8)}T${amzDate.slice(9, 11)}:${amzDate.slice(11, 13)}:${amzDate.slice(13, 15)}Z`,
  );
  if (amzDate.slice(0, 8) !== scopeDate || Number.isNaN(signingDate.getTime())) {
    throw awsErrors.invalidSignature("Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP.");
  }
  if (Math.abs(now - signingDate.getTime()) > MAX_CLOCK_SKEW_MS) {
    throw awsErrors.invalidSignature("Signature expired: the request time is more than 15 minutes away from the server time.");
  }
  const signedHeaders = signedHeaderList!.split(";");
  const headers: Record<string, string> = {};
  for (const name of signedHeaders) {
    const value = request.headers[name];
    if (value === undefined) throw awsErrors.invalidSignature(`Signed header ${name} is missing from the request.`);
    headers[name] = Array.isArray(value) ? value.join(",") : value;
  }
  const securityToken = request.headers["x-amz-security-token"];
  const signer = new SignatureV4({
    credentials: {
      accessKeyId: credential.accessKeyId,
      secretAccessKey: credential.secretAccessKey,
      ...(typeof securityToken === "string" ? { sessionToken: securityToken } : {}),
    },
    region: region!,
    service: service!,
    sha256: NodeSha256,
    uriEscapePath: true,
    // Sign exactly what the client signed: no extra x-amz-content-sha256 header.
    applyChecksum: false,
  });
  const [path, query = ""] = request.path.split("?", 2) as [string, string?];
  const signed = await signer.sign(
    {
      method: request.method,
      protocol: "http:",
      hostname: headers["host"] ?? "",
      path: path,
      query: Object.fromEntries(new URLSearchParams(query)),
      headers,
      body: request.body,
    },
    { signingDate, signableHeaders: new Set(signedHeaders) },
  );
  const ours = /Signature=([0-9a-f]{64})/.exec(String(signed.headers["authorization"] ?? signed.headers["Authorization"]))?.[1];
  if (!ours || !timingSafeEqual(Buffer.from(ours), Buffer.from(signature!))) {
    throw awsErrors.invalidSignature(
      "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.",
    );
  }
  return credential;
}

