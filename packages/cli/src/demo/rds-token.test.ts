import { describe, expect, it } from "vitest";
import { IamTokenCache, staticCredentialProvider } from "@rdsd/iam";
import { rdsTokenProblem, type TokenExpectation } from "./rds-token.js";

// Tokens come from the real signer (@aws-sdk/rds-signer through @rdsd/iam); the check is independent code.
const keys = { accessKeyId: "AKIDEMOTEST000000001", secretAccessKey: "demo-secret-not-a-real-key-000000000001" };
const host = "orders-dev.abc123xyz.eu-west-2.rds.amazonaws.com";

async function realToken(over: Partial<{ user: string; port: number; region: string; secret: string }> = {}) {
  const cache = new IamTokenCache({ credentials: staticCredentialProvider({ accessKeyId: keys.accessKeyId, secretAccessKey: over.secret ?? keys.secretAccessKey }) });
  const t = await cache.getToken({ host, port: over.port ?? 5432, user: over.user ?? "iam_dev", region: over.region ?? "eu-west-2" });
  return { token: t.token, signedAt: t.signedAt };
}

const expectation = (now: Date): TokenExpectation => ({ host, port: 5432, user: "iam_dev", region: "eu-west-2", ...keys, now });

describe("rdsTokenProblem", () => {
  it("accepts a token the SDK signed for this host, port, user and region", async () => {
    const { token, signedAt } = await realToken();
    expect(rdsTokenProblem(token, expectation(signedAt))).toBeNull();
    expect(rdsTokenProblem(token, expectation(new Date(signedAt.getTime() + 14 * 60_000)))).toBeNull();
  });

  it("refuses expired, foreign, tampered and mis-addressed tokens", async () => {
    const { token, signedAt } = await realToken();
    expect(rdsTokenProblem(token, expectation(new Date(signedAt.getTime() + 16 * 60_000)))).toBe("the token has expired");
    expect(rdsTokenProblem(token, { ...expectation(signedAt), user: "admin" })).toBe("the token is for another database user than admin");
    expect(rdsTokenProblem(token, { ...expectation(signedAt), port: 5433 })).toBe(`the token is not for ${host}:5433`);
    expect(rdsTokenProblem(token.replace("DBUser=iam_dev", "DBUser=iam_dex"), { ...expectation(signedAt), user: "iam_dex" })).toBe("the token's signature does not match");
    const wrongKey = await realToken({ secret: "another-secret-000000000000000000000000" });
    expect(rdsTokenProblem(wrongKey.token, expectation(wrongKey.signedAt))).toBe("the token's signature does not match");
    const otherRegion = await realToken({ region: "us-east-1" });
    expect(rdsTokenProblem(otherRegion.token, expectation(otherRegion.signedAt))).toBe("the token is signed by another key, region or service");
    expect(rdsTokenProblem("password123", expectation(signedAt))).toBe(`the token is not for ${host}:5432`);
    expect(rdsTokenProblem(`${host}:5432/?%zz&&==`, expectation(signedAt))).toBe("the token's Action is not connect");
  });
});
