import { describe, expect, it } from "vitest";
import { CleartextMemory } from "./cleartext-memory.js";

const ORDERS = { user: "app", database: "orders" };
const BILLING = { user: "app", database: "billing" };

describe("CleartextMemory", () => {
  it("password auth sends early only once the server asked this user and database for a cleartext password", () => {
    const memory = new CleartextMemory();
    expect(memory.sendEarly("password", ORDERS)).toBe(false);
    memory.learn(ORDERS, true);
    expect(memory.sendEarly("password", ORDERS)).toBe(true);
    expect(memory.sendEarly("password", BILLING)).toBe(false);
    memory.learn(ORDERS, false);
    expect(memory.sendEarly("password", ORDERS)).toBe(false);
  });

  it("IAM sends early until the server is seen asking for something else, and again once it asks for cleartext", () => {
    const memory = new CleartextMemory();
    expect(memory.sendEarly("iam", ORDERS)).toBe(true);
    memory.learn(ORDERS, false);
    expect(memory.sendEarly("iam", ORDERS)).toBe(false);
    expect(memory.sendEarly("iam", BILLING)).toBe(true);
    memory.learn(ORDERS, true);
    expect(memory.sendEarly("iam", ORDERS)).toBe(true);
  });

  it("keeps at most maxEntries identities, forgetting the one learnt longest ago", () => {
    const memory = new CleartextMemory(2);
    memory.learn(ORDERS, true);
    memory.learn(BILLING, true);
    memory.learn(ORDERS, true); // refreshed: now the newest
    memory.learn({ user: "app", database: "third" }, true);
    expect(memory.sendEarly("password", ORDERS)).toBe(true);
    expect(memory.sendEarly("password", BILLING)).toBe(false);
  });

  it("does not mix up a user and database whose names run together", () => {
    const memory = new CleartextMemory();
    memory.learn({ user: "a", database: "bc" }, true);
    expect(memory.sendEarly("password", { user: "ab", database: "c" })).toBe(false);
  });
});
