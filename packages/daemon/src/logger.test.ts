import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it, vi } from "vitest";
import { createLogger } from "./logger.js";

const TOKEN = "db.example.rds.amazonaws.com:5432/?Action=connect&DBUser=app&X-Amz-Signature=0123456789abcdef0123456789abcdef";

let dir: string | undefined;
afterEach(async () => {
  vi.restoreAllMocks();
  if (dir) await rm(dir, { recursive: true, force: true });
  dir = undefined;
});

describe("the daemon's logger", () => {
  it("redacts secrets and stamps the time once per entry, the same in the JSON file and on the console", async () => {
    dir = await mkdtemp(join(tmpdir(), "rdsd-logger-"));
    const file = join(dir, "rdsd.log");
    const written: string[] = [];
    // winston's console output goes to console._stderr (process.stderr outside a test runner), else console.error.
    const stderr = (console as unknown as { _stderr?: NodeJS.WritableStream })._stderr;
    if (stderr) {
      vi.spyOn(stderr, "write").mockImplementation((chunk: string | Uint8Array) => {
        written.push(String(chunk));
        return true;
      });
    } else {
      vi.spyOn(console, "error").mockImplementation((line: unknown) => void written.push(`${String(line)}\n`));
    }
    const logger = createLogger({ console: true, file }).child({ target: "orders" });
    logger.info("login failed", { error: `server said no to ${TOKEN}`, connection: 7 });
    logger.debug("not at info level", { connection: 8 });
    await logger.close();

    const lines = (await readFile(file, "utf8")).trim().split("\n");
    expect(lines).toHaveLength(1);
    const entry = JSON.parse(lines[0]!) as Record<string, unknown>;
    expect(entry).toMatchObject({ level: "info", message: "login failed", target: "orders", connection: 7 });
    expect(String(entry.error)).toContain("X-Amz-Signature=<redacted>");
    expect(lines[0]).not.toContain("0123456789abcdef");

    const consoleLines = written.join("").trim().split("\n");
    expect(consoleLines).toHaveLength(1);
    expect(consoleLines[0]).toContain("[orders] login failed");
    expect(consoleLines[0]).toContain("X-Amz-Signature=<redacted>");
    expect(consoleLines[0]).not.toContain("0123456789abcdef");
    // One timestamp per entry: both outputs carry the same one.
    expect(consoleLines[0]!.startsWith(String(entry.timestamp))).toBe(true);
  });
});
