import { EventEmitter } from "node:events";
import { PassThrough } from "node:stream";
import type { Duplex } from "node:stream";
import { describe, expect, it } from "vitest";
import { ProxyError } from "@rdsd/proxy";
import { ManualClock } from "./clock.js";
import type { SessionFactory, TunnelSession, TunnelSessionEvents } from "./session.js";
import { Supervisor } from "./supervisor.js";
import type { TunnelState } from "./supervisor.js";

// The state machine alone, on a manual clock, with sessions that are plain in-memory objects.

class MemorySession extends EventEmitter<TunnelSessionEvents> implements TunnelSession {
  readonly driver = "native" as const;
  readonly singleUse = false;
  ended = false;
  closed = false;
  private readonly open = new Set<Duplex>();
  constructor(
    readonly id: string,
    readonly instanceId: string,
  ) {
    super();
  }
  get activeStreams() {
    return this.open.size;
  }
  get available() {
    return !this.ended;
  }
  async openStream(): Promise<Duplex> {
    const s = new PassThrough();
    this.open.add(s);
    s.once("close", () => this.open.delete(s));
    return s;
  }
  async close() {
    this.closed = true;
    this.die(undefined);
  }
  die(problem: { message: string; fix: string } | undefined) {
    if (this.ended) return;
    this.ended = true;
    for (const s of this.open) s.destroy();
    this.emit("end", problem);
  }
}

class ScriptedFactory implements SessionFactory {
  readonly driver = "native" as const;
  readonly opens: number[] = [];
  readonly sessions: MemorySession[] = [];
  failWith: { message: string; fix: string } | undefined;
  constructor(private readonly clock: ManualClock) {}
  async open(instanceId: string): Promise<TunnelSession> {
    this.opens.push(this.clock.now() - START);
    if (this.failWith) throw new ProxyError(this.failWith.message, this.failWith.fix);
    const s = new MemorySession(`s-${this.sessions.length + 1}`, instanceId);
    this.sessions.push(s);
    return s;
  }
}

const START = 1_700_000_000_000;

function setup(options: { mode?: "eager" | "lazy"; sessions?: number; resolveHost?: (host: string) => Promise<readonly string[]> } = {}) {
  const clock = new ManualClock(START);
  const factory = new ScriptedFactory(clock);
  const states: TunnelState[] = [];
  const supervisor = new Supervisor({
    name: "t",
    host: "db.example",
    port: 5432,
    mode: options.mode ?? "eager",
    idleTimeoutMs: 60_000,
    sessions: options.sessions ?? 1,
    factory,
    bastion: { resolve: async () => "i-0abc", markFailed() {}, current: "i-0abc", describe: () => "i-0abc" },
    clock,
    probeOnOpen: false,
    probeIntervalMs: 3_600_000,
    resolveHost: options.resolveHost ?? (async () => ["10.0.1.5"]),
    backoff: { initialMs: 1_000, maxMs: 8_000, random: () => 0.999999 },
  });
  supervisor.on("state", (s) => states.push(s.state));
  return { clock, factory, supervisor, states };
}

/** Lets pending promise callbacks run (the fake factory resolves in microtasks). */
const settle = () => new Promise((r) => setImmediate(r));

/** A lazy tunnel whose last client just left: still ready 1 ms before idleTimeout (60 s), idle with its session closed at it. */
async function expectClosedAtIdleTimeout({ clock, factory, supervisor }: Pick<ReturnType<typeof setup>, "clock" | "factory" | "supervisor">): Promise<void> {
  clock.advance(59_999);
  expect(supervisor.state).toBe("ready");
  clock.advance(1);
  await settle();
  expect(supervisor.state).toBe("idle");
  expect(factory.sessions[0]!.closed).toBe(true);
}

describe("Supervisor state machine (manual clock)", () => {
  it("connecting -> reconnecting (never failed) after 3 failed opens, retrying on the backoff schedule; ready once an open succeeds", async () => {
    const { clock, factory, supervisor, states } = setup();
    factory.failWith = { message: "bastion i-0abc is not online in SSM", fix: "start it" };
    supervisor.start();
    await settle();
    for (const step of [1_000, 2_000, 4_000]) {
      clock.advance(step);
      await settle();
    }
    expect(factory.opens).toEqual([0, 1_000, 3_000, 7_000]);
    expect(states).toEqual(["connecting", "reconnecting"]);
    expect(supervisor.status().consecutiveFailures).toBe(4);
    expect(supervisor.status().lastError).toEqual({ message: "bastion i-0abc is not online in SSM", fix: "start it" });
    factory.failWith = undefined;
    clock.advance(8_000);
    await settle();
    expect(factory.opens).toEqual([0, 1_000, 3_000, 7_000, 15_000]);
    expect(supervisor.status()).toMatchObject({ state: "ready", lastError: null, sessionIds: ["s-1"] });
    await supervisor.stop();
    expect(factory.sessions[0]!.closed).toBe(true);
  });

  it("a session that dies is replaced at once; the state passes through reconnecting", async () => {
    const { clock, factory, supervisor, states } = setup();
    supervisor.start();
    await settle();
    factory.sessions[0]!.die({ message: "AWS closed SSM session s-1: idle", fix: "" });
    clock.advance(0); // no backoff for the first replacement
    await settle();
    expect(states).toEqual(["connecting", "ready", "reconnecting", "ready"]);
    expect(supervisor.status().sessionIds).toEqual(["s-2"]);
    await supervisor.stop();
  });

  it("ConnectToPortError keeps the session (degraded, with the fix); only a changed database address (a failover) replaces it, once", async () => {
    let addresses = ["10.0.1.5"];
    const { factory, supervisor } = setup({ resolveHost: async () => addresses });
    supervisor.start();
    await settle();
    const problem = { message: "bastion i-0abc could not connect to db.example:5432", fix: "check the database's security group" };
    const first = factory.sessions[0]!;
    first.emit("destination-error", problem);
    first.emit("destination-error", problem);
    await settle();
    expect(supervisor.status()).toMatchObject({ state: "degraded", lastError: problem, sessionIds: ["s-1"] });
    expect(factory.opens).toHaveLength(1);
    first.emit("destination-ok");
    expect(supervisor.status()).toMatchObject({ state: "ready", lastError: null, sessionIds: ["s-1"] });

    addresses = ["10.0.2.7"]; // the name points at the new primary; the agent still dials the old one
    first.emit("destination-error", problem);
    await settle();
    await settle();
    expect(factory.opens).toHaveLength(2);
    expect(supervisor.status()).toMatchObject({ state: "ready", sessionIds: ["s-2"] });
    expect(first.closed).toBe(true);
    factory.sessions[1]!.emit("destination-error", problem); // the new session resolved the new address: kept
    await settle();
    expect(factory.opens).toHaveLength(2);
    await supervisor.stop();
  });

  it("a client of a tunnel that keeps failing triggers an attempt at once and gets the error with its fix", async () => {
    const { clock, factory, supervisor } = setup();
    factory.failWith = { message: "SSO session expired", fix: "run `aws sso login --profile dev`" };
    supervisor.start();
    await settle();
    clock.advance(1_000);
    await settle();
    clock.advance(2_000);
    await settle();
    expect(supervisor.state).toBe("reconnecting");
    const before = factory.opens.length;
    const err = await supervisor.acquire(new AbortController().signal).catch((e: unknown) => e);
    expect(factory.opens.length).toBe(before + 1); // not waiting for the 4 s backoff
    expect(err).toBeInstanceOf(ProxyError);
    expect((err as ProxyError).fix).toBe("run `aws sso login --profile dev`");
    await supervisor.stop();
  });

  it("lazy: idle until a client, back to idle (sessions closed) idleTimeout after the last one leaves", async () => {
    const { clock, factory, supervisor } = setup({ mode: "lazy" });
    supervisor.start();
    await settle();
    expect(supervisor.state).toBe("idle");
    expect(factory.opens).toEqual([]);
    const stream = await supervisor.acquire(new AbortController().signal);
    expect(supervisor.state).toBe("ready");
    stream.destroy();
    await settle();
    await expectClosedAtIdleTimeout({ clock, factory, supervisor });
    await supervisor.stop();
  });

  it("lazy: a stream marked idle (a parked server connection) does not keep the tunnel open; one used again does", async () => {
    const { clock, factory, supervisor } = setup({ mode: "lazy" });
    supervisor.start();
    await settle();
    const parked = await supervisor.acquire(new AbortController().signal);
    const client = await supervisor.acquire(new AbortController().signal);
    supervisor.markIdle(parked, true);
    client.destroy();
    await settle();
    // Used again before the timeout: the timer stops; idle again, it starts afresh.
    clock.advance(30_000);
    supervisor.markIdle(parked, false);
    clock.advance(60_000);
    expect(supervisor.state).toBe("ready");
    supervisor.markIdle(parked, true);
    await expectClosedAtIdleTimeout({ clock, factory, supervisor });
    await supervisor.stop();
  });

  it("replaces a session before its age limit and lets the old one drain", async () => {
    const { clock, factory, supervisor } = setup();
    supervisor.start();
    await settle();
    const stream = await supervisor.acquire(new AbortController().signal);
    clock.advance(50 * 60_000);
    await settle();
    expect(supervisor.status().sessions.map((s) => [s.id, s.draining])).toEqual([
      ["s-2", false],
      ["s-1", true],
    ]);
    expect(factory.sessions[0]!.closed).toBe(false);
    stream.destroy();
    await settle();
    expect(factory.sessions[0]!.closed).toBe(true);
    await supervisor.stop();
  });
});
