import { open, stat } from "node:fs/promises";
import { watchFile, unwatchFile } from "node:fs";
import { logFilePath } from "@rdsd/control";
import { runningDaemon } from "../daemon-client.js";
import { CliError, EXIT } from "../exit.js";
import { formatLogLine } from "../log-format.js";

/**
 * `rdsd logs [-f]`: the daemon's log file, readable (or raw JSON lines with --json). The running daemon's
 * file when one answers (the demo and services may keep theirs elsewhere); without a daemon, this user's.
 */
export async function logsCommand(opts: { follow?: boolean; lines: string; json?: boolean }): Promise<number> {
  const count = Number(opts.lines);
  if (!Number.isInteger(count) || count < 0) throw new CliError(`--lines wants a whole number, got ${opts.lines}`, null, EXIT.usage);
  const path = (await runningDaemon())?.logFile ?? logFilePath();
  const print = (line: string) => process.stdout.write((opts.json ? line : formatLogLine(line)) + "\n");
  let size = await stat(path).then((s) => s.size, () => -1);
  if (size < 0 && !opts.follow) throw new CliError(`no log yet at ${path}`, "the daemon writes it once it has run (`rdsd start`)");
  if (size > 0 && count > 0) {
    const text = await readRange(path, Math.max(0, size - 4 * 1024 * 1024), size);
    for (const line of text.split("\n").filter(Boolean).slice(-count)) print(line);
  }
  if (!opts.follow) return EXIT.ok;

  // Follow: the file grows, or is rotated away (winston renames it and starts a new one).
  size = Math.max(size, 0);
  let partial = "";
  let reading = Promise.resolve();
  watchFile(path, { interval: 250 }, (current) => {
    reading = reading.then(async () => {
      if (current.size < size) size = 0; // rotated or truncated: the new file from its start
      if (current.size === size) return;
      const text = partial + (await readRange(path, size, current.size));
      size = current.size;
      const lines = text.split("\n");
      partial = lines.pop() ?? "";
      for (const line of lines.filter(Boolean)) print(line);
    });
  });
  await new Promise<void>((resolve) => {
    const stop = () => {
      unwatchFile(path);
      resolve();
    };
    process.once("SIGINT", stop);
    process.once("SIGTERM", stop);
  });
  return EXIT.ok;
}

async function readRange(path: string, from: number, to: number): Promise<string> {
  const handle = await open(path, "r");
  try {
    const buffer = Buffer.alloc(Math.max(0, to - from));
    await handle.read(buffer, 0, buffer.length, from);
    return buffer.toString("utf8");
  } finally {
    await handle.close();
  }
}
