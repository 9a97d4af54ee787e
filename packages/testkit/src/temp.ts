import { rmSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
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
