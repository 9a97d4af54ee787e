import { rmSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { createServer, type AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { onProcessExit } from "./exit-cleanup.js";

export interface TempDir {
  path: string;
  /** Removes the directory and everything in it; idempotent. */
  cleanup(): Promise<void>;
}

/** A fresh directory under the OS temp dir; removed by cleanup(), or at process exit if forgotten. */
export async function tempDir(prefix = "rdsd-test-"): Promise<TempDir> {
  const path = await mkdtemp(join(tmpdir(), prefix));
  const forget = onProcessExit(() => rmSync(path, { recursive: true, force: true }));
  return {
    path,
    cleanup: async () => {
      forget();
      await rm(path, { recursive: true, force: true });
    },
  };
}

/**
 * A TCP port on 127.0.0.1 that was free a moment ago (bound to port 0, then released). Another process may
 * take it before the caller binds it: callers that cannot listen on port 0 themselves must retry on EADDRINUSE.
 */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", resolve);
  });
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}
