import { describe, expect, it } from "vitest";
import { buildAuthenticationOk, buildBackendKeyData, buildParameterStatus, buildReadyForQuery } from "@rdsd/pg-wire";
import { localGreeting, newClientKey } from "./client-greeting.js";

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

describe("localGreeting", () => {
  const key = { processId: 99, secretKey: Buffer.from([5, 6, 7, 8]) };
  const expected = (parameters: Map<string, string>) =>
    Buffer.concat([buildAuthenticationOk(), ...[...parameters].map(([n, v]) => buildParameterStatus(n, v)), buildBackendKeyData(99, key.secretKey), buildReadyForQuery("I")]);

  it("tells every setting at its current value, also after the server changed one, added one, or a setting was dropped", () => {
    const parameters = new Map([["DateStyle", "ISO, MDY"], ["TimeZone", "UTC"]]);
    const parked = { negotiation: undefined, parameters };
    expect(localGreeting(parked, key).equals(expected(parameters))).toBe(true);
    // A client of the same connection ran SET TimeZone: the server's ParameterStatus updated the map in place.
    parameters.set("TimeZone", "Europe/Berlin");
    const afterChange = localGreeting(parked, key);
    expect(afterChange.equals(expected(parameters))).toBe(true);
    expect(afterChange.includes(Buffer.from("Europe/Berlin\0"))).toBe(true);
    parameters.set("application_name", "psql");
    expect(localGreeting(parked, key).equals(expected(parameters))).toBe(true);
    parameters.delete("DateStyle");
    expect(localGreeting(parked, key).equals(expected(parameters))).toBe(true);
  });

  it("keeps each connection's settings apart", () => {
    const a = { negotiation: undefined, parameters: new Map([["TimeZone", "UTC"]]) };
    const b = { negotiation: undefined, parameters: new Map([["TimeZone", "Asia/Tokyo"]]) };
    expect(localGreeting(a, key).equals(expected(a.parameters))).toBe(true);
    expect(localGreeting(b, key).equals(expected(b.parameters))).toBe(true);
    expect(localGreeting(a, key).equals(expected(a.parameters))).toBe(true);
  });
});
