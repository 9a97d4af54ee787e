import { open, stat } from "node:fs/promises";
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
  const found = await stat(path).catch(() => undefined);
  if (!found && !opts.follow) throw new CliError(`no log yet at ${path}`, "the daemon writes it once it has run (`rdsd start`)");
  if (found && found.size > 0 && count > 0) {
    const text = await readRange(path, Math.max(0, found.size - 4 * 1024 * 1024), found.size);
    for (const line of text.split("\n").filter(Boolean).slice(-count)) print(line);
  }
  if (!opts.follow) return EXIT.ok;
  let size = found?.size ?? 0;

  // Follow: the file grows, or is rotated away (winston renames it and starts a new one). Polled against
  // the size read above, not fs.watchFile's own first look, so a line written in between is not missed.
  let partial = "";
  let reading = false;
  const poll = async () => {
    if (reading) return;
    reading = true;
    try {
      const current = await stat(path).catch(() => undefined);
      if (!current) return;
      if (current.size < size) size = 0; // rotated or truncated: the new file from its start
      if (current.size === size) return;
      const text = partial + (await readRange(path, size, current.size));
      size = current.size;
      const lines = text.split("\n");
      partial = lines.pop() ?? "";
      for (const line of lines.filter(Boolean)) print(line);
    } finally {
      reading = false;
    }
  };
  const timer = setInterval(() => void poll(), 250);
  await new Promise<void>((resolve) => {
    const stop = () => {
      clearInterval(timer);
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
