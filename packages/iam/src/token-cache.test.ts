import { createHash, createHmac } from "node:crypto";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import type { AwsCredentialIdentity, AwsCredentialIdentityProvider } from "@smithy/types";
import { IamTokenCache, signingTimes } from "./token-cache.js";
import type { IamTokenKey } from "./token-cache.js";

// Obviously fake keys (not of the AKIA... shape real keys have).
const KEYS: AwsCredentialIdentity = {
  accessKeyId: "AKIDTESTEXAMPLE000001",
  secretAccessKey: "testSecretKeyNotRealXXXXXXXXXXXXXXXXXXXX",
};
const TARGET: IamTokenKey = {
  host: "orders-dev.abc123xyz.eu-west-2.rds.amazonaws.com",
  port: 5432,
  user: "iam_dev",
  region: "eu-west-2",
};
const SYSTEM_TIME = new Date("2024-03-05T10:20:30.456Z");

/** Independent SigV4 presign (node:crypto only) of what RDS expects, to check the signer against. */
function referencePresign(key: IamTokenKey, creds: AwsCredentialIdentity, at: Date): string {
  const amzDate = at.toISOString().replace(/\.\d{3}Z$/, "Z").replace(/[-:]/g, "");
  const day = amzDate.slice(0, 8);
  const scope = `${day}/${key.region}/rds-db/aws4_request`;
  const rfc3986 = (s: string) =>
    encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
  const params: Record<string, string> = {
    Action: "connect",
    DBUser: key.user,
    "X-Amz-Algorithm": "AWS4-HMAC-SHA256",
    "X-Amz-Credential": `${creds.accessKeyId}/${scope}`,
    "X-Amz-Date": amzDate,
    "X-Amz-Expires": "900",
    "X-Amz-SignedHeaders": "host",
  };
  if (creds.sessionToken) params["X-Amz-Security-Token"] = creds.sessionToken;
  const query = (entries: Record<string, string>) =>
    Object.keys(entries)
      .sort()
      .map((k) => `${rfc3986(k)}=${rfc3986(entries[k] ?? "")}`)
      .join("&");
  const sha256 = (s: string) => createHash("sha256").update(s).digest("hex");
  const canonicalRequest = ["GET", "/", query(params), `host:${key.host}:${key.port}`, "", "host", sha256("")].join("\n");
  const stringToSign = ["AWS4-HMAC-SHA256", amzDate, scope, sha256(canonicalRequest)].join("\n");
  let signingKey: Buffer = Buffer.from(`AWS4${creds.secretAccessKey}`);
  for (const part of [day, key.region, "rds-db", "aws4_request"]) {
    signingKey = createHmac("sha256", signingKey).update(part).digest();
  }
  const signature = createHmac("sha256", signingKey).update(stringToSign).digest("hex");
  return `${key.host}:${key.port}/?${query({ ...params, "X-Amz-Signature": signature })}`;
}

function countingProvider(identity: AwsCredentialIdentity = KEYS) {
  const counter = { calls: 0 };
  const provider: AwsCredentialIdentityProvider = async () => {
    counter.calls += 1;
    return identity;
  };
  return { provider, counter };
}

describe("IamTokenCache", () => {
  beforeEach(() => {
    // Only Date is faked: SignatureV4 takes its signing date from `new Date()`.
    vi.useFakeTimers({ toFake: ["Date"] });
    vi.setSystemTime(SYSTEM_TIME);
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it("keeps one slot per profile: the same database in two accounts gets two tokens, each signed by its profile's keys", async () => {
    const keysB: AwsCredentialIdentity = { accessKeyId: "AKIDTESTEXAMPLE000002", secretAccessKey: "testSecretKeyNotRealYYYYYYYYYYYYYYYYYYYY" };
    const a = countingProvider(KEYS);
    const b = countingProvider(keysB);
    const asked: (string | undefined)[] = [];
    const cache = new IamTokenCache({
      credentialsFor: (profile) => {
        asked.push(profile);
        return profile === "account-b" ? b.provider : a.provider;
      },
    });
    const fromA = await cache.getToken({ ...TARGET, profile: "account-a" });
    const fromB = await cache.getToken({ ...TARGET, profile: "account-b" });
    expect(fromA.token).toBe(referencePresign(TARGET, KEYS, SYSTEM_TIME));
    expect(fromB.token).toBe(referencePresign(TARGET, keysB, SYSTEM_TIME));
    expect(await cache.getToken({ ...TARGET, profile: "account-a" })).toBe(fromA);
    expect(asked).toEqual(["account-a", "account-b"]);
    expect(cache.describe().map((slot) => [slot.profile, slot.signings])).toEqual([
      ["account-a", 1],
      ["account-b", 1],
    ]);
    expect(cache.tokenAgeMs({ ...TARGET, profile: "account-c" })).toBeUndefined();
  });

  it("signs a deterministic token for the real endpoint that matches an independent SigV4 presign", async () => {
    const cache = new IamTokenCache({ credentials: countingProvider().provider });
    const issued = await cache.getToken(TARGET);

    expect(issued.token).toMatch(
      new RegExp(
        "^orders-dev\\.abc123xyz\\.eu-west-2\\.rds\\.amazonaws\\.com:5432/\\?Action=connect&DBUser=iam_dev" +
          "&X-Amz-Algorithm=AWS4-HMAC-SHA256" +
          "&X-Amz-Credential=AKIDTESTEXAMPLE000001%2F20240305%2Feu-west-2%2Frds-db%2Faws4_request" +
          "&X-Amz-Date=20240305T102030Z&X-Amz-Expires=900" +
          "&X-Amz-Signature=[0-9a-f]{64}&X-Amz-SignedHeaders=host$",
      ),
    );
    expect(issued.token).toBe(referencePresign(TARGET, KEYS, SYSTEM_TIME));
    expect(issued).toMatchObject({ ...TARGET });
    expect(issued.signedAt.toISOString()).toBe("2024-03-05T10:20:30.000Z");
    expect(issued.expiresAt.toISOString()).toBe("2024-03-05T10:35:30.000Z");

    // The same inputs a second later give a different signature: the date is really signed.
    vi.setSystemTime(new Date(SYSTEM_TIME.getTime() + 1000));
    const later = await new IamTokenCache({ credentials: countingProvider().provider }).getToken(TARGET);
    expect(later.token).not.toBe(issued.token);
    expect(later.token).toBe(referencePresign(TARGET, KEYS, new Date(SYSTEM_TIME.getTime() + 1000)));
  });

  it("escapes the user name and carries a session token, as the reference does", async () => {
    const session: AwsCredentialIdentity = { ...KEYS, sessionToken: "FwoGZXIvYXdzEXAMPLE/session+token==" };
    const key = { ...TARGET, user: "Dev User+ops", port: 5433 };
    const issued = await new IamTokenCache({ credentials: countingProvider(session).provider }).getToken(key);
    expect(issued.token).toContain("DBUser=Dev%20User%2Bops");
    expect(issued.token).toContain("X-Amz-Security-Token=FwoGZXIvYXdzEXAMPLE%2Fsession%2Btoken%3D%3D");
    expect(issued.token.startsWith(`${TARGET.host}:5433/?`)).toBe(true);
    expect(issued.token).toBe(referencePresign(key, session, SYSTEM_TIME));
  });

  it("reuses a token until signedAt + 15 min - margin, then signs again", async () => {
    let clock = SYSTEM_TIME.getTime();
    const { provider, counter } = countingProvider();
    const cache = new IamTokenCache({ credentials: provider, now: () => new Date(clock) });
    const first = await cache.getToken(TARGET);
    const signedAt = first.signedAt.getTime();

    clock = signedAt + 10 * 60_000 - 1; // one ms before the 5-minute margin starts
    expect(await cache.getToken(TARGET)).toBe(first);
    expect(cache.tokenAgeMs(TARGET)).toBe(10 * 60_000 - 1);
    expect(counter.calls).toBe(1);

    clock = signedAt + 10 * 60_000;
    vi.setSystemTime(clock);
    const second = await cache.getToken(TARGET);
    expect(counter.calls).toBe(2);
    expect(second.token).not.toBe(first.token);
    expect(second.signedAt.getTime()).toBe(clock);
    expect(second.token).toBe(referencePresign(TARGET, KEYS, new Date(clock)));
  });

  it("honours a configured margin and rejects nonsensical ones", async () => {
    let clock = SYSTEM_TIME.getTime();
    const { provider, counter } = countingProvider();
    const cache = new IamTokenCache({ credentials: provider, marginMs: 60_000, now: () => new Date(clock) });
    const first = await cache.getToken(TARGET);
    clock = first.signedAt.getTime() + 14 * 60_000 - 1;
    await cache.getToken(TARGET);
    expect(counter.calls).toBe(1);
    clock += 1;
    await cache.getToken(TARGET);
    expect(counter.calls).toBe(2);

    expect(() => new IamTokenCache({ credentials: provider, marginMs: 15 * 60_000 })).toThrow(RangeError);
    expect(() => new IamTokenCache({ credentials: provider, marginMs: -1 })).toThrow(RangeError);
  });

  it("shares one signing among 50 concurrent requests for one key", async () => {
    const { provider, counter } = countingProvider();
    const cache = new IamTokenCache({ credentials: provider });
    const tokens = await Promise.all(Array.from({ length: 50 }, () => cache.getToken({ ...TARGET })));
    expect(counter.calls).toBe(1);
    expect(new Set(tokens).size).toBe(1);
    expect(cache.describe()[0]?.signings).toBe(1);

    // Different keys get different slots, each signed once.
    const other = { ...TARGET, user: "iam_ro" };
    await Promise.all(Array.from({ length: 20 }, (_, i) => cache.getToken(i % 2 ? other : TARGET)));
    expect(counter.calls).toBe(2);
    // Host spelling does not make a new slot.
    await cache.getToken({ ...TARGET, host: `${TARGET.host.toUpperCase()}.` });
    expect(counter.calls).toBe(2);
  });

  it("does not cache a failed signing: all waiters see the error, the next request retries", async () => {
    let fail = true;
    let calls = 0;
    const provider: AwsCredentialIdentityProvider = async () => {
      calls += 1;
      if (fail) throw new Error("Token is expired. To refresh this SSO session run 'aws sso login'");
      return KEYS;
    };
    const cache = new IamTokenCache({ credentials: provider });
    const results = await Promise.allSettled(Array.from({ length: 10 }, () => cache.getToken(TARGET)));
    expect(results.every((r) => r.status === "rejected" && /Token is expired/.test(String(r.reason)))).toBe(true);
    expect(calls).toBe(1);
    expect(cache.tokenAgeMs(TARGET)).toBeUndefined();

    fail = false;
    const issued = await cache.getToken(TARGET);
    expect(issued.token).toBe(referencePresign(TARGET, KEYS, SYSTEM_TIME));
    expect(calls).toBe(2);
  });

  it("invalidate forces the next request to sign again", async () => {
    const { provider, counter } = countingProvider();
    const cache = new IamTokenCache({ credentials: provider });
    await cache.getToken(TARGET);
    cache.invalidate(TARGET);
    await cache.getToken(TARGET);
    expect(counter.calls).toBe(2);
  });

  it("describes slots with age and expiry but never the token", async () => {
    let clock = SYSTEM_TIME.getTime();
    const cache = new IamTokenCache({ credentials: countingProvider().provider, now: () => new Date(clock) });
    const issued = await cache.getToken(TARGET);
    clock += 90_000;
    const [status] = cache.describe();
    expect(status).toEqual({
      ...TARGET,
      signedAt: new Date("2024-03-05T10:20:30.000Z"),
      expiresAt: new Date("2024-03-05T10:35:30.000Z"),
      renewAt: new Date("2024-03-05T10:30:30.000Z"),
      ageMs: 90_456,
      signings: 1,
      signingNow: false,
    });
    const signature = /X-Amz-Signature=([0-9a-f]+)/.exec(issued.token)?.[1] ?? "missing";
    expect(JSON.stringify(cache.describe())).not.toContain(signature);
  });

  it("refuses to sign for loopback addresses and bad keys", async () => {
    const cache = new IamTokenCache({ credentials: countingProvider().provider });
    for (const host of ["localhost", "127.0.0.1", "::1"]) {
      await expect(cache.getToken({ ...TARGET, host })).rejects.toThrow(/not the tunnel's local address/);
    }
    await expect(cache.getToken({ ...TARGET, port: 0 })).rejects.toThrow(/not a TCP port/);
    await expect(cache.getToken({ ...TARGET, port: 5432.5 })).rejects.toThrow(/not a TCP port/);
    await expect(cache.getToken({ ...TARGET, user: "" })).rejects.toThrow(/user/);
    await expect(cache.getToken({ ...TARGET, region: "" })).rejects.toThrow(/region/);
    await expect(cache.getToken({ ...TARGET, host: "evil host/x" })).rejects.toThrow(/not a hostname/);

    const demo = new IamTokenCache({ credentials: countingProvider().provider, allowLoopbackHost: true });
    expect((await demo.getToken({ ...TARGET, host: "localhost" })).token.startsWith("localhost:5432/?")).toBe(true);
  });

  it("reads signing times from the token and refuses tokens without them", () => {
    expect(signingTimes("h:1/?X-Amz-Date=20991231T235959Z&X-Amz-Expires=900")).toEqual({
      signedAt: new Date("2099-12-31T23:59:59Z"),
      expiresAt: new Date("2100-01-01T00:14:59Z"),
    });
    expect(() => signingTimes("h:1/?Action=connect")).toThrow(/X-Amz-Date/);
  });
});
