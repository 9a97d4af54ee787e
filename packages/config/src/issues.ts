/** One problem found in a config file. */
export interface ConfigIssue {
  /** 1-based line of the offending text, when it has a place in the file. */
  line?: number;
  /** 1-based column of the offending text. */
  column?: number;
  /** Dotted key path such as "targets.orders-dev.listen"; "" for file-level problems. */
  key: string;
  /** What was expected (and what was found, unless that could be a secret). */
  message: string;
}

/** "FILE:LINE:COL: KEY: MESSAGE", leaving out the parts the issue does not have. */
export function formatIssue(file: string, issue: ConfigIssue): string {
  let place = file;
  if (issue.line !== undefined) {
    place += `:${issue.line}`;
    if (issue.column !== undefined) place += `:${issue.column}`;
  }
  return issue.key === "" ? `${place}: ${issue.message}` : `${place}: ${issue.key}: ${issue.message}`;
}

/** A config file that cannot be used. Carries every problem found, not just the first. */
export class ConfigError extends Error {
  override readonly name = "ConfigError";
  /** The file the issues are about. */
  readonly file: string;
  /** All problems, ordered by position in the file. */
  readonly issues: ConfigIssue[];

  constructor(file: string, issues: ConfigIssue[]) {
    super(issues.map((issue) => formatIssue(file, issue)).join("\n"));
    this.file = file;
    this.issues = issues;
  }
}
