import type { Duplex } from "node:stream";
import tls from "node:tls";
import { tunnelError } from "./errors.js";
import type { TunnelSession } from "./session.js";

/** The 8-byte PostgreSQL SSLRequest. */
export const SSL_REQUEST = Buffer.from([0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]);

/** How long the polite goodbye (TLS handshake, close_notify) may take after the database has answered. */
const GOODBYE_TIMEOUT_MS = 5_000;

/**
 * End-to-end check of one session through the database: open a stream, send SSLRequest, expect 'S' (RDS always
 * offers TLS). A tunnel that accepts bytes and carries nothing fails here; so does a bastion that cannot reach the
 * database. Then it says goodbye politely: a TLS handshake closed with close_notify, which PostgreSQL does not log
 * (dropping the connection after 'S' logs "could not accept SSL connection"). The handshake sends nothing secret
 * and proves nothing, so the certificate is not checked here (the proxy's own connections verify it).
 */
export async function probeSession(session: TunnelSession, timeoutMs: number, host: string): Promise<void> {
  const signal = AbortSignal.timeout(timeoutMs);
  const stream = await session.openStream(signal);
  let answered = false;
  let cleanup = () => {};
  try {
    const answer = await new Promise<number>((resolve, reject) => {
      const onAbort = () => reject(tunnelError({ message: `the tunnel did not answer a probe within ${timeoutMs / 1000} s (session ${session.id})`, fix: "rdsd replaces the session by itself; if this repeats, check the bastion and its route to the database" }));
      const onData = (chunk: Buffer) => {
        stream.pause();
        resolve(chunk[0]!);
      };
      const onError = (err: Error) => reject(err);
      const onClose = () => reject(tunnelError({ message: `the database connection closed during a probe (session ${session.id})`, fix: `check that ${host} is PostgreSQL and reachable from the bastion` }));
      cleanup = () => {
        signal.removeEventListener("abort", onAbort);
        stream.off("data", onData);
        stream.off("error", onError);
        stream.off("close", onClose);
      };
      signal.addEventListener("abort", onAbort, { once: true });
      stream.once("data", onData);
      stream.once("error", onError);
      stream.once("close", onClose);
      stream.write(SSL_REQUEST);
    });
    cleanup();
    if (answer !== 0x53) {
      throw tunnelError({ message: `${host} answered ${JSON.stringify(String.fromCharCode(answer))} to SSLRequest through the tunnel`, fix: "the target must be PostgreSQL with TLS (RDS always offers it); check the target's host and port" });
    }
    answered = true;
  } finally {
    cleanup();
    stream.on("error", () => {});
    if (!answered) stream.destroy();
  }
  await sayGoodbye(stream, host);
}

/** TLS handshake, then close_notify and wait for the close; best effort and bounded, never an error. */
function sayGoodbye(stream: Duplex, host: string): Promise<void> {
  return new Promise((resolve) => {
    const secure = tls.connect({ socket: stream, servername: host, rejectUnauthorized: false });
    const finish = () => {
      clearTimeout(timer);
      secure.destroy();
      stream.destroy();
      resolve();
    };
    const timer = setTimeout(finish, GOODBYE_TIMEOUT_MS);
    secure.on("error", finish);
    secure.once("close", finish);
    secure.once("secureConnect", () => {
      secure.resume(); // read the server's answer to close_notify (or its session tickets) until it closes
      secure.end();
    });
  });
}
