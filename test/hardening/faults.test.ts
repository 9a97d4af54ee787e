import { access, writeFile } from "node:fs/promises";
import { join } from "node:path";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort } from "@rdsd/testkit";
import { BASTION, daemonLogs, DB_PASSWORD, eventually, findSecrets, recordSsmTokens, startDaemon, startWorld, status, targetYaml, writeConfig, type DaemonProcess, type World } from "./harness.js";

// Faults on a bad day, through a real daemon process with the native SSM tunnel: every time, status tells
// the truth within seconds, clients get a clean ErrorResponse, and new connections work once the cause is
// gone, with no restart by hand. Credentials come from a credential_process profile the test can break.

let world: World;
let daemon: DaemonProcess | undefined;
let port: number;
let recorder: Awaited<ReturnType<typeof recordSsmTokens>>;
let credentialsMode: string;
const clientErrors: string[] = [];
/** What the credential helper prints when its sign-in has run out. */
const HELPER_SAYS = "login session expired at 17:02; run `corp-aws login` again";

beforeAll(async () => {
  world = await startWorld();
  recorder = await recordSsmTokens(world.emulator.endpoint);
  port = await freePort();
  credentialsMode = join(world.dir.path, "credentials-mode");
  await writeFile(credentialsMode, "ok");
  // A profile whose credentials can stop working and come back, as with an expiring SSO session. The
  // credentials expire 2 s after each answer, so the SDK must ask again (as after an SSO session ends).
  const script = join(world.dir.path, "credentials.cjs");
  await writeFile(
    script,
    `const fs = require("node:fs");
if (fs.readFileSync(${JSON.stringify(credentialsMode)}, "utf8").trim() !== "ok") { console.error(${JSON.stringify(HELPER_SAYS)}); process.exit(1); }
console.log(JSON.stringify({ Version: 1, AccessKeyId: ${JSON.stringify(world.emulator.credentials.accessKeyId)}, SecretAccessKey: ${JSON.stringify(world.emulator.credentials.secretAccessKey)}, Expiration: new Date(Date.now() + 2000).toISOString() }));
`,
  );
  await writeFile(world.env["AWS_CONFIG_FILE"]!, `[profile dev]\nregion = eu-west-2\ncredential_process = ${process.execPath} ${script}\n`);
  world.env = { ...world.env, AWS_ENDPOINT_URL_SSM: recorder.endpoint };
  delete world.env["AWS_ACCESS_KEY_ID"];
  delete world.env["AWS_SECRET_ACCESS_KEY"];
  // No warm spare: the database restart below is emulated by terminating the logged-in backends and refusing
  // new ones, which cannot reach a spare (a server process before its startup packet, not in pg_stat_activity);
  // a real restart closes a spare too, and the spare pool then fails to reopen it like any new connection.
  await writeConfig(world, targetYaml("orders", port, ["pool: { spares: 0 }"]), "aws: { profile: dev, region: eu-west-2 }\n");
  daemon = await startDaemon(world);
  await eventually("the target ready", async () => (await status(world)).targets[0]!.state === "ready");
});

afterAll(async () => {
  await daemon?.kill("SIGKILL");
  await recorder?.close();
  await world?.close();
});

async function connect(): Promise<pg.Client> {
  const client = new pg.Client({ host: "127.0.0.1", port, user: "me", database: "postgres", connectionTimeoutMillis: 20_000 });
  client.on("error", () => {});
  await client.connect();
  return client;
}

/** A new client's failure, as the client saw it (message and SQLSTATE); null when it connected. */
async function connectFailure(): Promise<{ message: string; code: string | undefined } | null> {
  try {
    const client = await connect();
    await client.end();
    return null;
  } catch (err) {
    const e = err as Error & { code?: string; hint?: string };
    clientErrors.push(`${e.message} ${e.hint ?? ""}`);
    return { message: `${e.message} ${e.hint ?? ""}`, code: e.code };
  }
}

async function sessionId(): Promise<string> {
  const [id] = (await status(world)).targets[0]!.sessionIds;
  if (!id) throw new Error("no session");
  return id;
}

/** Milliseconds until status satisfies `check`. */
async function timeUntilStatus(what: string, check: (t: Awaited<ReturnType<typeof status>>["targets"][number]) => boolean, timeoutMs = 15_000): Promise<number> {
  const started = Date.now();
  let last: unknown;
  try {
    await eventually(what, async () => check((last = (await status(world)).targets[0]!) as never), timeoutMs, 200);
  } catch (err) {
    throw new Error(`${(err as Error).message}; last status: ${JSON.stringify(last)}`);
  }
  return Date.now() - started;
}

describe("faults through a real daemon (native tunnel, emulator)", () => {
  it("a websocket drop loses nothing: a query in flight completes over the resumed session", async () => {
    const client = await connect();
    const before = await sessionId();
    const query = client.query<{ n: number }>("SELECT pg_sleep(1.5), 42 AS n");
    await new Promise((r) => setTimeout(r, 300));
    expect(world.emulator.dropWebSocket(before)).toBe(true);
    expect((await query).rows[0]!.n).toBe(42);
    expect(await sessionId()).toBe(before);
    expect(world.emulator.session(before)!.connections).toBeGreaterThanOrEqual(2);
    await client.end();
  });

  it("channel_closed (idle timeout): the client in flight gets an error, status shows it, a new session serves new clients", async () => {
    const client = await connect();
    const before = await sessionId();
    const query = client.query("SELECT pg_sleep(5)").then(
      () => null,
      (err: Error) => err,
    );
    await new Promise((r) => setTimeout(r, 300));
    world.emulator.closeSession(before, "idle-timeout");
    const failed = await query;
    expect(failed).toBeInstanceOf(Error);
    // The server side was between messages (pg_sleep had sent nothing): rdsd says what dropped, and why.
    expect(failed).toMatchObject({ code: "08006", severity: "FATAL", message: expect.stringMatching(/^the SSM tunnel to orders dropped: /) });
    clientErrors.push(String(failed));
    const ms = await timeUntilStatus("a new session", (t) => t.state === "ready" && t.sessionIds.length === 1 && t.sessionIds[0] !== before);
    expect(ms).toBeLessThan(10_000);
    expect(await connectFailure()).toBeNull();
  });

  it("the bastion goes offline: status tells, clients are told why; back online, new clients work", async () => {
    world.emulator.setInstanceOnline(BASTION, false);
    world.emulator.closeSession(await sessionId(), "terminated");
    const ms = await timeUntilStatus("the offline bastion in status", (t) => t.state !== "ready" && /online bastion|not connected|not online|offline/i.test(t.lastError?.message ?? ""));
    console.log(`offline bastion visible in status after ${ms} ms`);
    expect(ms).toBeLessThan(10_000);
    const failure = await connectFailure();
    expect(failure!.message).toMatch(/online bastion|not connected|not online|offline/i);
    world.emulator.setInstanceOnline(BASTION, true);
    await eventually("a new client served again", async () => (await connectFailure()) === null, 30_000, 500);
  }, 60_000);

  it("the database restarts (every backend terminated, the port refusing for a while): FATAL to clients in flight, clean errors while down, service after", async () => {
    const client = await connect();
    const inFlight = client.query("SELECT pg_sleep(5)").then(
      () => null,
      (err: Error & { code?: string }) => err,
    );
    await new Promise((r) => setTimeout(r, 300));
    world.emulator.setFaults({ instanceId: BASTION }, { destinationUnreachable: true });
    await world.pg.admin("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'app'");
    const failed = await inFlight;
    expect(failed?.code).toBe("57P01"); // PostgreSQL's own FATAL, relayed to the client
    const down = await connectFailure();
    expect(down).not.toBeNull();
    expect(down!.message).toMatch(/destination|connect|reach/i);
    world.emulator.setFaults({ instanceId: BASTION }, null);
    await eventually("a new client served again", async () => (await connectFailure()) === null, 30_000, 500);
  }, 60_000);

  it("SIGKILL: the next start replaces the stale socket and terminates the session the killed daemon left open", async () => {
    const left = await sessionId();
    await daemon!.kill("SIGKILL");
    expect(world.emulator.session(left)!.state).not.toBe("Terminated");
    await access(join(world.env["RDSD_RUNTIME_DIR"]!, "rdsd.sock")); // left behind
    daemon = await startDaemon(world);
    await eventually("the leftover session terminated", () => world.emulator.session(left)!.state === "Terminated", 10_000);
    await eventually("the target ready", async () => (await status(world)).targets[0]!.state === "ready");
    expect(world.emulator.sessions({ active: true }).map((s) => s.sessionId)).toEqual(await status(world).then((s) => s.targets[0]!.sessionIds));
    expect(await connectFailure()).toBeNull();
  }, 60_000);

  // The credential helper behind the profile (as an SSO or vault helper would) starts failing mid-day: the
  // helper's own words and the fix reach status and new clients within seconds, and once it works again the
  // daemon serves with no restart. Its identity expires 2 s after each answer, so the SDK never holds keys
  // past their expiry (the emulator, unlike AWS, would not refuse them) and every new session asks again.
  it("credentials that stop working: status and new clients say so with the fix; once they work again, no restart is needed", async () => {
    await writeFile(credentialsMode, "expired");
    await new Promise((r) => setTimeout(r, 2_100)); // the identity the SDK holds runs out
    const started = Date.now();
    world.emulator.closeSession(await sessionId(), "max-duration");
    await timeUntilStatus("the credential failure in status", (t) => t.state !== "ready" && /credential_process/.test(t.lastError?.message ?? ""), 20_000);
    const ms = Date.now() - started;
    console.log(`credential failure visible in status ${ms} ms after the session ended`);
    expect(ms).toBeLessThan(10_000);
    const { targets } = await status(world);
    expect(targets[0]!.lastError).toEqual({
      message: `the credential_process of profile dev failed (${HELPER_SAYS})`,
      fix: `run the credential_process of [profile dev] in ${world.env["AWS_CONFIG_FILE"]} by hand to see why, and sign in again with the tool it calls`,
    });
    const failure = await connectFailure();
    expect(failure).not.toBeNull();
    expect(failure!.message).toContain(`the credential_process of profile dev failed (${HELPER_SAYS})`);
    expect(failure!.message).toContain("run the credential_process of [profile dev]");

    await writeFile(credentialsMode, "ok");
    // A client connecting triggers a fresh attempt (no wait for the backoff).
    const back = Date.now();
    await eventually("a new client served again", async () => (await connectFailure()) === null, 30_000, 500);
    console.log(`served again ${Date.now() - back} ms after the helper works again`);
    expect((await status(world)).targets[0]!.state).toBe("ready");
    expect(daemon!.child.exitCode).toBeNull();
  }, 60_000);

  // The tunnel package covers these against the supervisor on a manual clock; here, the times a real daemon takes.
  for (const fault of ["blackHole", "stopAcknowledging"] as const) {
    it(`${fault}: the session is found out and replaced with no restart; new clients are served after`, async () => {
      await eventually("the target ready", async () => (await status(world)).targets[0]!.state === "ready", 30_000, 200);
      const client = await connect();
      await client.query("SELECT 1");
      const before = await sessionId();
      world.emulator.setFaults({ sessionId: before }, { [fault]: true });
      const started = Date.now();
      const since = () => Date.now() - started;
      const inFlight = client.query("SELECT 2 AS two").then(
        () => `finished after ${since()} ms`,
        (err: Error) => (clientErrors.push(String(err)), `failed after ${since()} ms (${err.message})`),
      );
      await new Promise((r) => setTimeout(r, 200));
      const newClient = connectFailure().then((f) => (f === null ? `served after ${since()} ms` : `failed after ${since()} ms (${f.message})`));
      const replaced = timeUntilStatus("another session", (t) => t.sessionIds.length > 0 && !t.sessionIds.includes(before), 60_000).then(() => since());
      const [inFlightOutcome, newClientOutcome, replacedMs] = await Promise.all([inFlight, newClient, replaced]);
      const afterReplacement = Date.now();
      expect(await connectFailure()).toBeNull();
      console.log(
        `${fault}: a query in flight ${inFlightOutcome}; a new client meanwhile ${newClientOutcome}; the session replaced in status after ${replacedMs} ms; ` +
          `a client after that served in ${Date.now() - afterReplacement} ms`,
      );
      if (fault === "blackHole") {
        // Before the supervisor checked stalled sessions (stallProbeMs), this took ~38 s (the data channel's 20 s
        // stall limit, a resume, the 30 s probe) and the client meanwhile timed out with no answer. Now: 5 s of
        // unacknowledged data, the next 5 s beat, a smux NOP the agent does not acknowledge within its 2-4 s
        // deadline (no database probe); the waiting client gets the reason.
        expect(replacedMs).toBeLessThan(20_000);
        expect(newClientOutcome).toMatch(/^served|^failed .*(SSM session|tunnel)/);
      } else {
        // Data still flows: the probe passes, and the data channel's own limits replace the session.
        expect(newClientOutcome).toMatch(/^served/);
        expect(replacedMs).toBeLessThan(60_000);
      }
      expect(daemon!.child.exitCode).toBeNull();
      await client.end().catch(() => {});
    }, 120_000);
  }

  // Skipped: a real daemon process cannot be made to see its clock jump without changing the machine's clock
  // (root, and every other test on the machine with it). packages/tunnel/test/wake.test.ts covers it on the
  // supervisor the daemon runs: a jump past the wake threshold probes at once and replaces a black-holed session.
  it.skip("a clock jump (the machine slept): covered at tunnel level by packages/tunnel/test/wake.test.ts", () => {});

  it("no secret (database password, AWS secret key, any session token) appears in anything produced", async () => {
    await daemon!.kill("SIGTERM");
    daemon = undefined;
    expect(recorder.tokens.length).toBeGreaterThan(3);
    const texts: Record<string, string> = { "daemon log": await daemonLogs(world), "client errors": clientErrors.join("\n") };
    world.produced.forEach((t, i) => (texts[`output ${i}`] = t));
    const secrets: Record<string, string> = { "database password": DB_PASSWORD, "AWS secret key": world.emulator.credentials.secretAccessKey };
    recorder.tokens.forEach((t, i) => (secrets[`session token ${i}`] = t));
    expect(findSecrets(texts, secrets)).toEqual([]);
  });
});
