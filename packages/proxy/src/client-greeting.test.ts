import { describe, expect, it } from "vitest";
import { newClientKey } from "./client-greeting.js";

describe("newClientKey", () => {
  it("keeps the backend's pid and makes a secret as long as the backend's, different for every client", () => {
    const backend = { processId: 4242, secretKey: Buffer.from([1, 2, 3, 4]) };
    const secrets = new Set<string>();
    // More keys than one pool page holds, so the pool is refilled on the way.
    for (let i = 0; i < 3000; i++) {
      const key = newClientKey(backend);
      expect(key.processId).toBe(4242);
      expect(key.secretKey.length).toBe(4);
      expect(key.secretKey.equals(backend.secretKey)).toBe(false);
      secrets.add(key.secretKey.toString("hex"));
    }
    // 3000 draws from 2^32 values: a repeat would mean the bytes are reused, not random (odds of a chance one ~0.1%).
    expect(secrets.size).toBeGreaterThanOrEqual(2998);
  });

  it("a protocol 3.2 backend's longer key gets a secret of the same length", () => {
    const backend = { processId: 7, secretKey: Buffer.alloc(32, 9) };
    const key = newClientKey(backend);
    expect(key.secretKey.length).toBe(32);
    expect(key.secretKey.equals(newClientKey(backend).secretKey)).toBe(false);
  });
});
