import type { Duplex } from "node:stream";
import type tls from "node:tls";
import { decodeErrorFields, readBackendFrame, textParameter, type StartupParameter } from "@rdsd/pg-wire";
import { PROBE_STAGES, type Problem, type ProbeReport, type ProbeStage, type ProbeStageName } from "@rdsd/control";
import { loginUpstream, ProxyError, secureUpstream, type UpstreamSecret } from "@rdsd/proxy";
import { parseBundle } from "./rds-ca-bundle.js";
import type { ProbeInputs } from "./target.js";

const PROBE_TIMEOUT_MS = 30_000;

/**
 * `rdsd test TARGET`: walks the target's real path one stage at a time, with the proxy's own code
 * (dialer, verify-full TLS, login), and stops at the first failure, saying which stage failed and why.
 */
export async function probeTarget(name: string, inputs: ProbeInputs, driver: string): Promise<ProbeReport> {
  const stages: ProbeStage[] = [];
  const warnings: Problem[] = [];
  const signal = AbortSignal.timeout(PROBE_TIMEOUT_MS);
  let failed = false;
  let stream: Duplex | undefined;
  let socket: tls.TLSSocket | undefined;

  const run = async <T>(stage: ProbeStageName, work: () => Promise<{ value: T; detail: string } | { skip: string }>): Promise<T | undefined> => {
    if (failed) {
      stages.push({ name: stage, status: "skipped", ms: 0, detail: "an earlier stage failed", error: null });
      return undefined;
    }
    const started = performance.now();
    try {
      const outcome = await work();
      const ms = Math.round(performance.now() - started);
      if ("skip" in outcome) {
        stages.push({ name: stage, status: "skipped", ms, detail: outcome.skip, error: null });
        return undefined;
      }
      stages.push({ name: stage, status: "ok", ms, detail: outcome.detail, error: null });
      return outcome.value;
    } catch (err) {
      failed = true;
      stages.push({ name: stage, status: "failed", ms: Math.round(performance.now() - started), detail: "", error: problemOf(err) });
      return undefined;
    }
  };

  try {
    // A setup error is reported on its own stage: a missing RDS CA bundle is not a credentials problem.
    const setupFailure = inputs.setupError ? new ProxyError(inputs.setupError.message, inputs.setupError.fix) : undefined;
    await run("ca", async () => {
      if (setupFailure && inputs.setupStage === "ca") throw setupFailure;
      const source = inputs.caSource === "rds" ? "the RDS CA bundle" : inputs.caSource;
      return { value: undefined, detail: `${parseBundle(String(inputs.upstream.ca))} certificate(s) from ${source}` };
    });
    if (setupFailure && !failed) throw setupFailure;
    const secret = await run("credentials", async () => {
      const s = await inputs.upstream.auth.secret();
      return { value: s, detail: inputs.aws ? `${s.provenance} (${inputs.aws})` : s.provenance };
    });
    await run("bastion", async () => {
      if (driver === "direct") return { skip: "direct driver: no bastion" };
      if (!inputs.tunnel?.checkBastion) return { skip: "this tunnel driver has no bastion check" };
      const bastion = await inputs.tunnel.checkBastion();
      if (!bastion.online) throw new ProxyError(`bastion ${bastion.instanceId} is not online in SSM`, bastion.detail);
      if (bastion.warning) warnings.push(bastion.warning);
      return { value: bastion, detail: `${bastion.instanceId} online (${bastion.detail})` };
    });
    stream = await run("tunnel", async () => {
      const s = await inputs.dialer.dial(signal);
      s.on("error", () => {});
      return { value: s, detail: `connected via ${inputs.dialer.describe()}` };
    });
    socket = await run("tls", async () => {
      const secured = await secureUpstream(stream!, inputs.upstream, signal);
      secured.on("error", () => secured.destroy());
      return { value: secured, detail: `verify-full: certificate valid for ${inputs.upstream.host} (${secured.getProtocol() ?? "TLS"})` };
    });
    const pending = await run("login", async () => {
      const parameters: StartupParameter[] = [textParameter("user", inputs.upstream.user), textParameter("application_name", "rdsd test")];
      if (inputs.database) parameters.push(textParameter("database", inputs.database));
      const session = await loginUpstream(socket!, inputs.upstream, { majorVersion: 3, minorVersion: 0, parameters }, Promise.resolve(secret as UpstreamSecret), signal);
      const refusal = greetingError(session.greeting);
      if (refusal) throw refusal;
      return { value: session.pending, detail: `logged in as ${inputs.upstream.user}${inputs.database ? ` to ${inputs.database}` : ""} (${inputs.upstream.auth.method === "iam" ? "IAM token" : "password"})` };
    });
    await run("query", async () => {
      const value = await selectOne(socket!, pending ?? Buffer.alloc(0), signal);
      return { value, detail: `SELECT 1 returned ${value}` };
    });
  } catch (err) {
    // Setup (region, AWS settings) failed before the credentials stage ran: report it there.
    failed = true;
    stages.push({ name: "credentials", status: "failed", ms: 0, detail: "", error: problemOf(err) });
  } finally {
    socket?.destroy();
    stream?.destroy();
  }
  return { target: name, ok: !failed, stages: fillSkipped(stages), warnings };
}

/** A FATAL after AuthenticationOk (no such database, too many connections) ends the greeting. */
function greetingError(greeting: Buffer): ProxyError | undefined {
  let rest = greeting;
  for (;;) {
    const result = readBackendFrame(rest, 1 << 20);
    if (result.status !== "ok") return undefined;
    if (result.frame.type === "E") {
      const fields = decodeErrorFields(result.frame.body);
      const fix = fields.code === "3D000" ? "set the target's database to one that exists (clients without one get the user's name)" : (fields.hint ?? "see the database's message");
      return new ProxyError(`the server refused the session: ${fields.message}`, fix);
    }
    rest = rest.subarray(result.frame.raw.length);
  }
}

function fillSkipped(stages: ProbeStage[]): ProbeStage[] {
  return PROBE_STAGES.map((name) => stages.find((s) => s.name === name) ?? { name, status: "skipped", ms: 0, detail: "an earlier stage failed", error: null });
}

function problemOf(err: unknown): Problem {
  if (err instanceof ProxyError) return { message: err.message, fix: err.fix };
  if (err instanceof Error && err.name === "TimeoutError") return { message: "timed out", fix: "see `rdsd logs` for where it stalled" };
  return { message: err instanceof Error ? err.message : String(err), fix: "see `rdsd logs`" };
}

/** Sends `SELECT 1` as a simple query and reads up to ReadyForQuery. Resolves with the value returned. */
function selectOne(socket: tls.TLSSocket, pending: Buffer, signal: AbortSignal): Promise<string> {
  const sql = Buffer.from("SELECT 1\0", "utf8");
  const query = Buffer.alloc(5 + sql.length);
  query.write("Q", 0, "latin1");
  query.writeUInt32BE(4 + sql.length, 1);
  sql.copy(query, 5);

  return new Promise((resolve, reject) => {
    let buffered = pending;
    let value: string | undefined;
    let error: Problem | undefined;
    const cleanup = () => {
      socket.off("data", onData);
      socket.off("close", onClose);
      signal.removeEventListener("abort", onAbort);
    };
    const fail = (err: Error) => {
      cleanup();
      reject(err);
    };
    const onAbort = () => fail(new ProxyError("SELECT 1 got no answer in time", "the database accepted the login but does not answer: check its load"));
    const onClose = () => fail(new ProxyError("the database closed the connection during SELECT 1", "see the database's log"));
    const onData = (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk]);
      for (;;) {
        const frame = readBackendFrame(buffered, 1 << 20);
        if (frame.status === "incomplete") return;
        if (frame.status === "invalid") return fail(new ProxyError(`unexpected bytes from the database: ${frame.reason}`, "check that the target is a PostgreSQL server"));
        buffered = buffered.subarray(frame.frame.raw.length);
        const { type, body } = frame.frame;
        if (type === "D" && body.readUInt16BE(0) === 1) {
          const length = body.readInt32BE(2);
          value = length < 0 ? "NULL" : body.subarray(6, 6 + length).toString("utf8");
        } else if (type === "E") {
          const fields = decodeErrorFields(body);
          error = { message: `${fields.message} (SQLSTATE ${fields.code})`, fix: "the login works; the query was refused: check the user's privileges" };
        } else if (type === "Z") {
          cleanup();
          socket.end(Buffer.from([0x58, 0, 0, 0, 4])); // Terminate
          if (error) return reject(new ProxyError(error.message, error.fix));
          if (value !== "1") return reject(new ProxyError(`SELECT 1 returned ${value ?? "no row"}`, "this does not look like PostgreSQL"));
          return resolve(value);
        }
      }
    };
    signal.addEventListener("abort", onAbort, { once: true });
    socket.on("data", onData);
    socket.once("close", onClose);
    socket.resume(); // the login left the socket paused
    socket.write(query);
    if (buffered.length > 0) onData(Buffer.alloc(0));
  });
}
