import { createHash } from "node:crypto";
import type { Readable } from "node:stream";

/**
 * Hands each chunk to `take` until at least `n` bytes have arrived (the last chunk whole). Rejects on an error,
 * or on an end or close before `n` bytes, saying how many came.
 */
function consume(stream: Readable, n: number, take: (chunk: Buffer) => void): Promise<void> {
  if (n === 0) return Promise.resolve();
  return new Promise((resolve, reject) => {
    let got = 0;
    const onData = (chunk: Buffer) => {
      take(chunk);
      got += chunk.length;
      if (got >= n) {
        cleanup();
        resolve();
      }
    };
    const onEnd = () => {
      cleanup();
      reject(new Error(`stream ended after ${got} of ${n} bytes`));
    };
    const onError = (err: Error) => {
      cleanup();
      reject(err);
    };
    const cleanup = () => {
      stream.off("data", onData);
      stream.off("end", onEnd);
      stream.off("close", onEnd);
      stream.off("error", onError);
    };
    stream.on("data", onData);
    stream.on("end", onEnd);
    stream.on("close", onEnd);
    stream.on("error", onError);
  });
}

/** Reads until at least `n` bytes have arrived and returns them; rejects on an error or an early end. */
export async function readBytes(stream: Readable, n: number): Promise<Buffer> {
  const parts: Buffer[] = [];
  await consume(stream, n, (chunk) => parts.push(chunk));
  return Buffer.concat(parts);
}

/**
 * Reads until at least `n` bytes have arrived, hashing them (sha256, hex) as they come, so a large transfer
 * is checked without being held: the bytes themselves are returned only when `n` is at most `keepUpTo`.
 */
export async function readHashed(stream: Readable, n: number, keepUpTo = 1 << 20): Promise<{ hash: string; bytes: Buffer | undefined }> {
  const hash = createHash("sha256");
  const kept: Buffer[] = [];
  const keep = n <= keepUpTo;
  await consume(stream, n, (chunk) => {
    hash.update(chunk);
    if (keep) kept.push(chunk);
  });
  return { hash: hash.digest("hex"), bytes: keep ? Buffer.concat(kept) : undefined };
}
