import { tunnelError } from "./errors.js";
import type { TunnelSession } from "./session.js";

/** The 8-byte PostgreSQL SSLRequest. */
export const SSL_REQUEST = Buffer.from([0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]);

/**
 * End-to-end check of one session: open a stream, send SSLRequest, expect 'S' (RDS always offers TLS).
 * A tunnel that accepts bytes and carries nothing fails here; so does a bastion that cannot reach the database.
 */
export async function probeSession(session: TunnelSession, timeoutMs: number, host: string): Promise<void> {
  const signal = AbortSignal.timeout(timeoutMs);
  const stream = await session.openStream(signal);
  let cleanup = () => {};
  try {
    const answer = await new Promise<number>((resolve, reject) => {
      const onAbort = () => reject(tunnelError({ message: `the tunnel did not answer a probe within ${timeoutMs / 1000} s (session ${session.id})`, fix: "rdsd replaces the session by itself; if this repeats, check the bastion and its route to the database" }));
      const onData = (chunk: Buffer) => resolve(chunk[0]!);
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
    if (answer !== 0x53) {
      throw tunnelError({ message: `${host} answered ${JSON.stringify(String.fromCharCode(answer))} to SSLRequest through the tunnel`, fix: "the target must be PostgreSQL with TLS (RDS always offers it); check the target's host and port" });
    }
  } finally {
    cleanup();
    stream.on("error", () => {});
    stream.destroy();
  }
}
