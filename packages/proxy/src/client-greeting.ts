import { randomBytes } from "node:crypto";
import { buildAuthenticationOk, buildBackendKeyData, buildParameterStatus, buildReadyForQuery, readBackendFrame, MIN_CANCEL_KEY_LENGTH } from "@rdsd/pg-wire";

/** The cancel key a client is given: the real backend's pid, and a secret rdsd made for this client alone. */
export interface ClientCancelKey {
  processId: number;
  secretKey: Buffer;
}

/**
 * A fresh secret for a client of `backend`, as long as the server's own (4 bytes in protocol 3.0, longer in
 * 3.2). The pid stays the real one: clients also cancel with `pg_cancel_backend(pid)` from another session.
 */
export function newClientKey(backend: { processId: number; secretKey: Buffer }): ClientCancelKey {
  return { processId: backend.processId, secretKey: secretBytes(Math.max(backend.secretKey.length, MIN_CANCEL_KEY_LENGTH)) };
}

/** Random bytes drawn a page at a time: one call into the CSPRNG serves many connections, not one each. */
const SECRET_POOL_BYTES = 4096;
let secretPool = Buffer.alloc(0);
let secretPoolUsed = 0;

function secretBytes(length: number): Buffer {
  if (length > SECRET_POOL_BYTES) return randomBytes(length);
  if (secretPoolUsed + length > secretPool.length) {
    secretPool = randomBytes(SECRET_POOL_BYTES);
    secretPoolUsed = 0;
  }
  // A copy: a slice would keep the whole page alive for as long as the session keeps its key.
  const secret = Buffer.from(secretPool.subarray(secretPoolUsed, secretPoolUsed + length));
  secretPoolUsed += length;
  return secret;
}

/** The server's greeting with the client's key in place of the backend's in its BackendKeyData; otherwise unchanged. */
export function withClientKey(greeting: Buffer, key: ClientCancelKey): Buffer {
  const parts: Buffer[] = [];
  let at = 0;
  while (at < greeting.length) {
    const r = readBackendFrame(greeting.subarray(at), Number.MAX_SAFE_INTEGER);
    if (r.status !== "ok") {
      // The login already framed every message: anything else is kept as it is.
      parts.push(greeting.subarray(at));
      break;
    }
    parts.push(r.frame.type === "K" ? buildBackendKeyData(key.processId, key.secretKey) : r.frame.raw);
    at += r.length;
  }
  return Buffer.concat(parts);
}

/**
 * What rdsd answers a client handed a parked connection, without asking the server: what a fresh login's
 * greeting holds (the server's NegotiateProtocolVersion if it sent one, AuthenticationOk, every reportable
 * setting at its current value, the client's cancel key, ReadyForQuery idle).
 */
export function localGreeting(parked: { negotiation: Buffer | undefined; parameters: ReadonlyMap<string, string> }, key: ClientCancelKey): Buffer {
  const parts: Buffer[] = [];
  if (parked.negotiation) parts.push(parked.negotiation);
  parts.push(AUTHENTICATION_OK, parameterStatusMessages(parked.parameters), buildBackendKeyData(key.processId, key.secretKey), READY_IDLE);
  return Buffer.concat(parts);
}

const AUTHENTICATION_OK = buildAuthenticationOk();
const READY_IDLE = buildReadyForQuery("I");

/** A connection's ParameterStatus messages as last encoded, and the settings they were encoded from. */
const encodedSettings = new WeakMap<ReadonlyMap<string, string>, { settings: string[]; messages: Buffer }>();

/**
 * One ParameterStatus per setting, encoded once per connection and again only after the server reported a
 * change: a reused connection's greeting is built on every connect (a -C workload: thousands a second).
 */
function parameterStatusMessages(parameters: ReadonlyMap<string, string>): Buffer {
  const cached = encodedSettings.get(parameters);
  if (cached && sameSettings(cached.settings, parameters)) return cached.messages;
  const settings: string[] = [];
  const messages: Buffer[] = [];
  for (const [name, value] of parameters) {
    settings.push(name, value);
    messages.push(buildParameterStatus(name, value));
  }
  const encoded = Buffer.concat(messages);
  encodedSettings.set(parameters, { settings, messages: encoded });
  return encoded;
}

function sameSettings(settings: readonly string[], parameters: ReadonlyMap<string, string>): boolean {
  if (settings.length !== parameters.size * 2) return false;
  let at = 0;
  for (const [name, value] of parameters) {
    if (settings[at++] !== name || settings[at++] !== value) return false;
  }
  return true;
}
