import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort } from "@rdsd/testkit";
import { daemonLogs, DB_PASSWORD, findSecrets, rdsd, startDaemon, startWorld, status, targetYaml, writeConfig, type DaemonProcess, type World } from "./harness.js";

// A real daemon's local endpoints: a read-only target as `rdsd status`, `rdsd url` and a refused write show it.

let world: World;
let daemon: DaemonProcess | undefined;
const ports: Record<string, number> = {};

beforeAll(async () => {
  world = await startWorld();
  for (const name of ["guarded"]) ports[name] = await freePort();
  const direct = (name: string, extra: string[] = []) => targetYaml(name, ports[name]!, extra, "direct", world.pg.port);
  await writeConfig(world, direct("guarded", ["readOnly: true", "parameters: { statement_timeout: 5min, search_path: \"app, public\" }"]));
  daemon = await startDaemon(world);
});

afterAll(async () => {
  await daemon?.kill();
  await world?.close();
});

describe("a read-only target", () => {
  it("says so in rdsd status (JSON and table) with the parameters it sends", async () => {
    const guarded = (await status(world)).targets.find((t) => t.name === "guarded")!;
    expect(guarded.readOnly).toBe(true);
    expect(guarded.parameters).toEqual({ statement_timeout: "5min", search_path: "app, public", default_transaction_read_only: "on" });
    const table = await rdsd(world, ["status"]);
    expect(table.stdout).toMatch(/^guarded \(read-only\)\s+127\.0\.0\.1:\d+/m);
  });

  it("says so in rdsd url (on stderr, so $(rdsd url X) is still just the URL, and in --json)", async () => {
    const url = await rdsd(world, ["url", "guarded"]);
    expect(url.code).toBe(0);
    expect(url.stdout.trim()).toBe(`postgresql://app@127.0.0.1:${ports["guarded"]}/postgres`);
    expect(url.stderr).toContain("target guarded is read-only in rdsd's config (readOnly: true)");
    expect(JSON.parse((await rdsd(world, ["url", "guarded", "--json"])).stdout)).toMatchObject({ readOnly: true });
  });

  it("refuses a write with SQLSTATE 25006 and the hint naming the target; its settings are in force", async () => {
    const client = new pg.Client({ host: "127.0.0.1", port: ports["guarded"], user: "me", database: "postgres" });
    await client.connect();
    try {
      const error = await client.query("CREATE TABLE t (x int)").catch((err: unknown) => err as pg.DatabaseError);
      expect(error).toMatchObject({ code: "25006", hint: "target guarded is read-only in rdsd's config (readOnly: true)" });
      const settings = await client.query<{ ro: string; st: string; sp: string }>("SELECT current_setting('default_transaction_read_only') AS ro, current_setting('statement_timeout') AS st, current_setting('search_path') AS sp");
      expect(settings.rows[0]).toEqual({ ro: "on", st: "5min", sp: "app, public" });
    } finally {
      await client.end();
    }
  });
});

describe("secrets", () => {
  it("none of the secrets used appears in anything this file produced", async () => {
    await daemon?.kill();
    daemon = undefined;
    const texts = Object.fromEntries([...world.produced.map((t, i) => [`output ${i}`, t]), ["daemon log", await daemonLogs(world)]]);
    expect(findSecrets(texts, { "database password": DB_PASSWORD })).toEqual([]);
  });
});
