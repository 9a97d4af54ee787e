import { describe, expect, it } from "vitest";
import { md5PasswordAnswer, ScramClient } from "./scram.js";

describe("SCRAM-SHA-256 client", () => {
  // RFC 7677 section 3 test vector (user "user", password "pencil"); PostgreSQL sends n=* instead of the name,
  // so the proof differs from the RFC's; the vector still checks nonce handling and the server signature path.
  it("produces a proof the server side would compute, and verifies the server signature", async () => {
    const { createHash, createHmac, pbkdf2Sync } = await import("node:crypto");
    const client = new ScramClient("pencil", "rOprNGfwEbeRWgbNEkqO");
    expect(client.clientFirstMessage()).toBe("n,,n=*,r=rOprNGfwEbeRWgbNEkqO");
    const serverFirst = "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
    const final = client.clientFinalMessage(serverFirst);
    expect(final.startsWith("c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=")).toBe(true);

    // Server side computation, independent of the client code.
    const salted = pbkdf2Sync("pencil", Buffer.from("W22ZaJ0SNY7soEsUEjb6gQ==", "base64"), 4096, 32, "sha256");
    const clientKey = createHmac("sha256", salted).update("Client Key").digest();
    const storedKey = createHash("sha256").update(clientKey).digest();
    const authMessage = `n=*,r=rOprNGfwEbeRWgbNEkqO,${serverFirst},c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0`;
    const signature = createHmac("sha256", storedKey).update(authMessage).digest();
    const proof = Buffer.from(final.split(",p=")[1]!, "base64");
    const recoveredClientKey = Buffer.alloc(32);
    for (let i = 0; i < 32; i++) recoveredClientKey[i] = proof[i]! ^ signature[i]!;
    expect(createHash("sha256").update(recoveredClientKey).digest()).toEqual(storedKey);

    const serverKey = createHmac("sha256", salted).update("Server Key").digest();
    const serverSignature = createHmac("sha256", serverKey).update(authMessage).digest("base64");
    expect(() => client.verifyServerFinal(`v=${serverSignature}`)).not.toThrow();
    expect(() => client.verifyServerFinal(`v=${Buffer.alloc(32).toString("base64")}`)).toThrow(/does not match/);
    expect(() => client.verifyServerFinal("e=invalid-proof")).toThrow(/invalid-proof/);
  });

  it("refuses a server nonce that does not extend the client's, and absurd iteration counts", () => {
    expect(() => new ScramClient("p", "abc").clientFinalMessage("r=xyz123,s=AAAA,i=4096")).toThrow(/nonce/);
    expect(() => new ScramClient("p", "abc").clientFinalMessage("r=abc,s=AAAA,i=4096")).toThrow(/nonce/);
    expect(() => new ScramClient("p", "abc").clientFinalMessage("r=abcd,s=AAAA,i=999999999")).toThrow(/iteration/);
    expect(() => new ScramClient("p", "abc").clientFinalMessage("garbage")).toThrow(/malformed/);
  });

  it("computes PostgreSQL's MD5 answer", () => {
        const salt = Buffer.from([0x01, 0x02, 0x03, 0x04]);
    // Expected value computed outside Node (Python hashlib).
    expect(md5PasswordAnswer("bob", "secret", salt)).toBe("md5f21dfe33ff3a9e03dbc3e008251fe5cc");
  });
});
