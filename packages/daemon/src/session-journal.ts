import { readFile, rename, writeFile } from "node:fs/promises";
import { join } from "node:path";

/** One SSM session the daemon opened and has not yet terminated. */
export interface JournalEntry {
  sessionId: string;
  region: string;
  profile: string | null;
  startedAt: string;
}

/**
 * The SSM sessions this daemon has open, kept in a file so that a daemon killed with SIGKILL (or a crash)
 * leaves a record: the next start terminates them on AWS instead of leaving them to the idle timeout.
 * Holds session ids only (never tokens). Writes are serialized and atomic (temp file + rename).
 */
export class SessionJournal {
  private readonly entries = new Map<string, JournalEntry>();
  private writing: Promise<void> = Promise.resolve();

  constructor(readonly path: string) {}

  static inStateDir(stateDir: string): SessionJournal {
    return new SessionJournal(join(stateDir, "ssm-sessions.json"));
  }

  opened(entry: JournalEntry): Promise<void> {
    this.entries.set(entry.sessionId, entry);
    return this.save();
  }

  ended(sessionId: string): Promise<void> {
    if (!this.entries.delete(sessionId)) return this.writing;
    return this.save();
  }

  /** What an earlier run left behind (an unreadable or damaged file counts as nothing). */
  async leftovers(): Promise<JournalEntry[]> {
    const text = await readFile(this.path, "utf8").catch(() => "[]");
    try {
      const parsed: unknown = JSON.parse(text);
      return Array.isArray(parsed) ? parsed.filter(isEntry) : [];
    } catch {
      return [];
    }
  }

  /** Forgets the leftovers once they are dealt with: the file holds this run's sessions from now on. */
  reset(): Promise<void> {
    return this.save();
  }

  private save(): Promise<void> {
    const snapshot = JSON.stringify([...this.entries.values()]);
    this.writing = this.writing.then(async () => {
      const temp = `${this.path}.${process.pid}.tmp`;
      await writeFile(temp, snapshot, { mode: 0o600 });
      await rename(temp, this.path);
    }).catch(() => {});
    return this.writing;
  }
}

function isEntry(value: unknown): value is JournalEntry {
  if (typeof value !== "object" || value === null) return false;
  const v = value as Record<string, unknown>;
  return typeof v["sessionId"] === "string" && typeof v["region"] === "string" && (v["profile"] === null || typeof v["profile"] === "string");
}
