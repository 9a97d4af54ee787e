import { writeFile } from "node:fs/promises";
import pg from "pg";
import { describe, expect, it } from "vitest";
import { ConfigError, parseConfig } from "@rdsd/config";
import { freePort } from "@rdsd/testkit";
import { daemonLogs, DB_PASSWORD, findSecrets, startDaemon, startWorld, targetYaml, writeConfig } from "./harness.js";

// Every key of the config schema, wrong in type and (where it has one) in range, plus the combinations that
// are refused: each gets exactly one error, at the offending value's file:line:col, naming the key path. Then a
// running daemon given a bad file on SIGHUP keeps its configuration and keeps serving.

const FILE = "/home/u/.config/rdsd/config.yaml";

/** A key at `path` (dotted, under `aws`, `defaults` or `targets.t`) written as a flow mapping line. */
interface Case {
  path: string;
  value: string;
  /** What the message says after "PATH: ". */
  says: RegExp;
  /** Sibling keys written before the bad one in the innermost mapping (for combinations). */
  siblings?: string;
  /** The key path the error names when it is not `path` (a combination reported on another key). */
  reportedAt?: string;
  /** Where the error points when not at the value (a missing key points at its mapping's key). */
  pointsAt?: string;
}

/** A case for a key under defaults and/or a target. */
type KeyCase = Omit<Case, "path"> & { key: string };

// Shared keys: valid in `defaults` and in a target.
const SHARED: KeyCase[] = [
  { key: "aws", value: "eu-west-2", says: /^expected a mapping with profile and\/or region/ },
  { key: "aws.profile", value: "[dev]", says: /^expected an AWS profile name, got a list/ },
  { key: "aws.region", value: "Frankfurt", says: /^expected an AWS region such as eu-west-2, got "Frankfurt"/ },
  { key: "user", value: "[app]", says: /^expected a database user name, got a list/ },
  { key: "user", value: "{ name: app }", says: /^expected a database user name, got a mapping/ },
  { key: "port", value: '"abc"', says: /^expected a port 1-65535, got "abc"/ },
  { key: "port", value: "0", says: /^expected a port 1-65535, got 0/ },
  { key: "port", value: "65536", says: /^expected a port 1-65535, got 65536/ },
  { key: "port", value: "5432.5", says: /^expected a port 1-65535, got 5432.5/ },
  { key: "auth", value: "5", says: /^expected iam, \{ password: \{ env: VAR \} \} or \{ password: \{ file: PATH \} \}/ },
  { key: "auth", value: "sso", says: /^expected iam, \{ password/ },
  { key: "auth.password", value: "hunter2-not-here", says: /^expected \{ env: VAR \} or \{ file: PATH \} \(the password itself does not go in the config file\)/ },
  { key: "auth.password.env", value: "[A]", says: /^expected an environment variable name/ },
  { key: "auth.password.env", value: "1BAD-NAME", says: /^expected an environment variable name \(letters, digits, _; not starting with a digit\)/ },
  { key: "auth.password.file", value: "[a]", says: /^expected a path to a file holding the password/ },
  { key: "auth.password.file", value: "/x", siblings: "env: PW", says: /^expected exactly one of env or file/, reportedAt: "auth.password", pointsAt: "{" },
  { key: "tls", value: "5", says: /^expected a mapping such as \{ ca: rds \}/ },
  { key: "tls.ca", value: "[rds]", says: /^expected "rds" or a path to a PEM file of CA certificates/ },
  { key: "clientTls", value: '"yes"', says: /^expected true or false, got "yes"/ },
  { key: "clientTls", value: "1", says: /^expected true or false, got 1/ },
  { key: "allowOtherUsers", value: "yes", says: /^expected true or false, got "yes"/ },
  { key: "allowNonLoopback", value: "1", says: /^expected true or false, got 1/ },
  { key: "tunnel", value: "native", says: /^expected a mapping of tunnel settings/ },
  { key: "tunnel.driver", value: "ssh", says: /^expected one of native, plugin, direct, got "ssh"/ },
  { key: "tunnel.driver", value: "[native]", says: /^expected one of native, plugin, direct/ },
  { key: "tunnel.mode", value: "sometimes", says: /^expected one of eager, lazy, got "sometimes"/ },
  { key: "tunnel.idleTimeout", value: "soon", siblings: "mode: lazy", says: /^expected a duration such as "30s", "10m", "1h" or a number of seconds \(more than zero\), got "soon"/ },
  { key: "tunnel.idleTimeout", value: "0", siblings: "mode: lazy", says: /^expected a duration .* \(more than zero\), got 0/ },
  { key: "tunnel.idleTimeout", value: '"-5s"', siblings: "mode: lazy", says: /^expected a duration .* \(more than zero\), got "-5s"/ },
  { key: "tunnel.sessions", value: "0", says: /^expected a number of SSM sessions 1-8, got 0/ },
  { key: "tunnel.sessions", value: "9", says: /^expected a number of SSM sessions 1-8, got 9/ },
  { key: "tunnel.sessions", value: "two", says: /^expected a number of SSM sessions 1-8, got "two"/ },
  { key: "tunnel.pluginPath", value: "[x]", siblings: "driver: plugin", says: /^expected an executable name \(looked up in PATH\) or a path/ },
  { key: "bastion", value: "i-0123456789abcdef0", says: /^expected \{ instanceId: i-0123456789abcdef0 \} or \{ tag: "Key=Value" \}/ },
  { key: "bastion.instanceId", value: "x-123", says: /^expected an EC2 instance id such as i-0123456789abcdef0, got "x-123"/ },
  { key: "bastion.instanceId", value: "5", says: /^expected an EC2 instance id/ },
  { key: "bastion.tag", value: "novalue", says: /^expected "Key=Value", e.g. "Name=db-bastion", got "novalue"/ },
  { key: "bastion.tag", value: '"=x"', says: /^expected "Key=Value"/ },
  { key: "bastion.tag", value: '"Name=b"', siblings: "instanceId: i-0123456789abcdef0", says: /^expected exactly one of instanceId or tag/, reportedAt: "bastion", pointsAt: "{" },
];

// In a target only: defaults may hold settings for the targets they apply to (a pluginPath for the plugin targets).
const TARGET_ONLY: KeyCase[] = [
  { key: "tunnel.idleTimeout", value: "30s", siblings: "mode: eager", says: /^only applies with tunnel mode lazy \(this target's mode is eager\)/ },
  { key: "tunnel.pluginPath", value: "/opt/plugin", siblings: "driver: native", says: /^only applies with tunnel driver plugin \(this target's driver is native\)/ },
  { key: "host", value: "[db]", says: /^expected a hostname such as orders-dev/ },
  { key: "host", value: "https://db.example.com", says: /^expected a hostname such as orders-dev.*, got "https:\/\/db.example.com"/ },
  { key: "listen", value: "abc", says: /^expected a port 1-65535 or "ADDRESS:PORT" on loopback, got "abc"/ },
  { key: "listen", value: "0", says: /^expected a port 1-65535 or "ADDRESS:PORT" on loopback, got 0/ },
  { key: "listen", value: "70000", says: /^expected a port 1-65535 or "ADDRESS:PORT" on loopback, got 70000/ },
  { key: "listen", value: "[6432]", says: /^expected a port 1-65535 or "ADDRESS:PORT" on loopback, got a list/ },
  { key: "listen", value: '"0.0.0.0:6432"', says: /^0\.0\.0\.0 is not a loopback address: .*allowNonLoopback: true/ },
  { key: "database", value: "[db]", says: /^expected a database name, got a list/ },
  { key: "tunnel.address", value: "nowhere", siblings: "driver: direct", says: /^expected "HOST:PORT", e.g. "127.0.0.1:5432", got "nowhere"/ },
  { key: "tunnel.address", value: '"127.0.0.1:5432"', siblings: "driver: native", says: /^only applies with tunnel driver direct \(this target's driver is native\)/ },
];

const AWS: Case[] = [
  { path: "aws", value: "eu-west-2", says: /^expected a mapping with profile and\/or region/ },
  { path: "aws.profile", value: "[dev]", says: /^expected an AWS profile name, got a list/ },
  { path: "aws.region", value: "5", says: /^expected an AWS region such as eu-west-2/ },
  { path: "aws.region", value: "Frankfurt", says: /^expected an AWS region such as eu-west-2, got "Frankfurt"/ },
];

const NOTIFICATIONS: Case[] = [
  { path: "notifications", value: "false", says: /^expected a mapping such as \{ desktop: false \}, got false/ },
  { path: "notifications.desktop", value: '"off"', says: /^expected true or false, got "off"/ },
];

const MISPLACED: Case[] = [
  { path: "defaults.host", value: "db.example.com", says: /^not allowed in defaults: host is set per target/, pointsAt: "host" },
  { path: "defaults.listen", value: "6432", says: /^not allowed in defaults: listen is set per target/, pointsAt: "listen" },
  { path: "defaults.database", value: "app", says: /^not allowed in defaults: database is set per target/, pointsAt: "database" },
  { path: "defaults.tunnel.address", value: '"127.0.0.1:5432"', says: /^not allowed in defaults: address is set per target/, pointsAt: "address" },
  { path: "defaults.tunel", value: "{ driver: direct }", says: /unknown key.*tunnel/i, pointsAt: "tunel" },
  { path: "targets.t.hots", value: "db.example.com", says: /unknown key.*host/i, pointsAt: "hots" },
];

// A complete, valid target; a case replaces the line of its first key.
const TARGET_LINES: Record<string, string> = {
  host: "db.example.com",
  listen: "6432",
  user: "app",
  bastion: "{ instanceId: i-0123456789abcdef0 }",
};

/** The file for one case, and where the bad value is (1-based line and column). */
function fileFor(c: Case): { text: string; line: number; column: number } {
  const [section, ...rest] = c.path.split(".");
  const keys = section === "targets" ? rest.slice(1) : rest; // drop the target name
  const indent = section === "targets" ? "    " : "  ";
  // The innermost key is written with its siblings; outer keys as nested flow mappings.
  const inner = `${c.siblings ? `${c.siblings}, ` : ""}${keys.at(-1)}: ${c.value}`;
  const badLine = keys.length === 0 ? `${section}: ${c.value}` : keys.length === 1 ? `${indent}${inner}` : `${indent}${keys[0]}: ${nested(keys.slice(1), inner)}`;
  const lines: string[] = [];
  let at = 0;
  if (section === "aws" || section === "notifications") {
    lines.push(badLine.startsWith(`${section}:`) ? badLine : `${section}:`);
    at = lines.length;
    if (!badLine.startsWith(`${section}:`)) lines.push(badLine), (at = lines.length);
  }
  if (section === "defaults") {
    lines.push("defaults:", badLine);
    at = lines.length;
  }
  lines.push("targets:", "  t:");
  for (const [key, value] of Object.entries(TARGET_LINES)) {
    if (section === "targets" && keys[0] === key) continue;
    lines.push(`    ${key}: ${value}`);
  }
  if (section === "targets") {
    lines.push(badLine);
    at = lines.length;
  }
  const text = lines.join("\n") + "\n";
  const lineText = lines[at - 1]!;
  const column = c.pointsAt !== undefined ? lineText.lastIndexOf(c.pointsAt) + 1 : lineText.lastIndexOf(`${keys.at(-1) ?? section}: ${c.value}`) + `${keys.at(-1) ?? section}: `.length + 1;
  return { text, line: at, column };
}

function nested(keys: string[], inner: string): string {
  return keys.length === 1 ? `{ ${inner} }` : `{ ${keys[0]}: ${nested(keys.slice(1), inner)} }`;
}

function errorsOf(text: string): string[] {
  try {
    parseConfig(text, FILE, { home: "/home/u" });
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return (error as ConfigError).message.split("\n");
  }
  throw new Error(`expected the config to be refused:\n${text}`);
}

const CASES: Case[] = [
  ...AWS,
  ...NOTIFICATIONS,
  ...SHARED.map(({ key, ...c }) => ({ ...c, path: `defaults.${key}` })),
  ...SHARED.map(({ key, ...c }) => ({ ...c, path: `targets.t.${key}` })),
  ...TARGET_ONLY.map(({ key, ...c }) => ({ ...c, path: `targets.t.${key}` })),
  ...MISPLACED,
];

describe("every config key, wrong in type, range and combination", () => {
  it("the table covers every key of the schema in defaults and in a target", () => {
    const covered = new Set(CASES.map((c) => c.path.replace(/^targets\.t\./, "target.")));
    const schema = [
      "aws", "aws.profile", "aws.region", "notifications", "notifications.desktop",
      ...["aws", "aws.profile", "aws.region", "user", "port", "auth", "auth.password", "auth.password.env", "auth.password.file", "tls", "tls.ca", "clientTls", "allowOtherUsers", "allowNonLoopback",
        "tunnel", "tunnel.driver", "tunnel.mode", "tunnel.idleTimeout", "tunnel.sessions", "tunnel.pluginPath", "bastion", "bastion.instanceId", "bastion.tag"].flatMap((k) => [`defaults.${k}`, `target.${k}`]),
      "target.host", "target.listen", "target.database", "target.tunnel.address",
    ];
    expect(schema.filter((k) => !covered.has(k))).toEqual([]);
  });

  it.each(CASES.map((c) => [`${c.path}: ${c.siblings ? `${c.siblings}, ` : ""}${c.value}`, c] as const))("%s", (_name, c) => {
    const { text, line, column } = fileFor(c);
    const errors = errorsOf(text);
    const section = c.path.startsWith("targets.t.") ? "targets.t" : c.path.split(".")[0]!;
    const reported = c.reportedAt === undefined ? c.path : `${section}.${c.reportedAt}`;
    const prefix = `${FILE}:${line}:${column}: ${reported}: `;
    expect(errors, text).toHaveLength(1);
    expect(errors[0]!.startsWith(prefix), `${errors[0]}\n  wanted prefix ${prefix}\n${text}`).toBe(true);
    expect(errors[0]!.slice(prefix.length)).toMatch(c.says);
    expect(errors[0]).not.toContain("hunter2-not-here"); // whatever sits under auth is never echoed
  });
});

describe("a bad file on SIGHUP", () => {
  it("keeps the running configuration, logs why with file:line:col, and keeps serving", async () => {
    const world = await startWorld();
    const port = await freePort();
    await writeConfig(world, targetYaml("orders", port, [], "direct", world.pg.port));
    const daemon = await startDaemon(world);
    try {
      await writeFile(world.configPath, `targets:\n  orders:\n    listen: abc\n`);
      daemon.child.kill("SIGHUP");
      await daemon.waitForOutput("reload failed; the running configuration stays");
      expect(daemon.output()).toContain(`${world.configPath}:3:13: targets.orders.listen: expected a port`);
      const client = new pg.Client({ host: "127.0.0.1", port, user: "me", database: "postgres" });
      await client.connect();
      expect((await client.query<{ u: string }>("SELECT current_user AS u")).rows[0]!.u).toBe("app");
      await client.end();
      expect(daemon.child.exitCode).toBeNull();
    } finally {
      await daemon.kill();
      const texts = Object.fromEntries([...world.produced.map((t, i) => [`output ${i}`, t]), ["daemon log", await daemonLogs(world)]]);
      expect(findSecrets(texts, { "database password": DB_PASSWORD })).toEqual([]);
      await world.close();
    }
  }, 60_000);
});
