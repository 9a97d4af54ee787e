import { describe, expect, it } from "vitest";
import { ConfigError, parseConfig, type RdsdConfig } from "./index.js";

const FILE = "/home/u/.config/rdsd/config.yaml";
const HOME = "/home/u";

/** Joins lines so that line N of the YAML is element N-1 here: line numbers in assertions stay readable. */
function yaml(...lines: string[]): string {
  return `${lines.join("\n")}\n`;
}

function parse(text: string): RdsdConfig {
  return parseConfig(text, FILE, { home: HOME });
}

/** The formatted messages of the ConfigError that parsing `text` throws. */
function errorsOf(text: string): string[] {
  try {
    parse(text);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return (error as ConfigError).message.split("\n");
  }
  throw new Error("expected the config to be refused");
}

const GOOD_TARGET = ["    host: db.example.com", "    user: app", "    bastion: { instanceId: i-0123456789abcdef0 }"];

describe("parseConfig: a valid file", () => {
  const text = yaml(
    "aws:",
    "  profile: dev-sso",
    "  region: eu-west-2",
    "defaults:",
    "  user: iam_dev",
    '  bastion: { tag: "Name=db-bastion" }',
    "  tls: { ca: ~/certs/corp-ca.pem }",
    "  clientTls: false",
    "  tunnel: { sessions: 2, idleTimeout: 5m }",
    "targets:",
    "  orders-dev:",
    "    host: orders-dev.abc123xyz.eu-west-2.rds.amazonaws.com",
    "    listen: 6432",
    "    database: orders",
    "  billing-dev:",
    "    host: billing.cluster-xyz.eu-west-2.rds.amazonaws.com",
    "    port: 5433",
    '    listen: "[::1]:6433"',
    "    user: billing_ro",
    "    auth: { password: { file: secrets/billing.pw } }",
    "    clientTls: true",
    "    tls: { ca: rds }",
    "    tunnel: { mode: lazy, sessions: 4 }",
    "    bastion: { instanceId: i-0123456789abcdef0 }",
    "  local:",
    "    host: localhost",
    "    listen: 127.0.0.2:7000",
    "    auth: { password: { env: LOCAL_PG_PASSWORD } }",
    '    tunnel: { driver: direct, address: "127.0.0.1:55432" }',
  );
  const config = parse(text);
  const [orders, billing, local] = config.targets;

  it("keeps the aws settings and the file", () => {
    expect(config.file).toBe(FILE);
    expect(config.aws).toEqual({ profile: "dev-sso", region: "eu-west-2" });
    expect(config.targets.map((t) => t.name)).toEqual(["orders-dev", "billing-dev", "local"]);
  });

  it("fills a target from defaults and built-in defaults, expanding a bare port to both loopbacks", () => {
    expect(orders).toEqual({
      name: "orders-dev",
      host: "orders-dev.abc123xyz.eu-west-2.rds.amazonaws.com",
      port: 5432,
      listen: [
        { host: "127.0.0.1", port: 6432 },
        { host: "::1", port: 6432 },
      ],
      user: "iam_dev",
      database: "orders",
      aws: { profile: "dev-sso", region: "eu-west-2" },
      auth: { kind: "iam" },
      tls: { ca: "/home/u/certs/corp-ca.pem" },
      clientTls: false,
      tunnel: { driver: "native", mode: "eager", idleTimeoutMs: 300_000, sessions: 2, pluginPath: "session-manager-plugin" },
      bastion: { tag: { key: "Name", value: "db-bastion" } },
      pool: { idle: 4, idleTimeoutMs: 300_000, spares: 1 },
    });
  });

  it("lets target values win key by key, and resolves relative paths against the config's directory", () => {
    expect(billing).toEqual({
      name: "billing-dev",
      host: "billing.cluster-xyz.eu-west-2.rds.amazonaws.com",
      port: 5433,
      listen: [{ host: "::1", port: 6433 }],
      user: "billing_ro",
      aws: { profile: "dev-sso", region: "eu-west-2" },
      auth: { kind: "password", source: { file: "/home/u/.config/rdsd/secrets/billing.pw" } },
      tls: { ca: "rds" },
      clientTls: true,
      // mode and sessions from the target, idleTimeout from defaults
      tunnel: { driver: "native", mode: "lazy", idleTimeoutMs: 300_000, sessions: 4, pluginPath: "session-manager-plugin" },
      // the other bastion form replaces the default one entirely
      bastion: { instanceId: "i-0123456789abcdef0" },
      pool: { idle: 4, idleTimeoutMs: 300_000, spares: 1 },
    });
    expect(billing?.database).toBeUndefined();
  });

  it("keeps password sources as references and takes the direct driver's address", () => {
    expect(local?.auth).toEqual({ kind: "password", source: { env: "LOCAL_PG_PASSWORD" } });
    expect(local?.listen).toEqual([{ host: "127.0.0.2", port: 7000 }]);
    expect(local?.tunnel.driver).toBe("direct");
    expect(local?.tunnel.address).toEqual({ host: "127.0.0.1", port: 55432 });
  });

  it("never reads the password while loading", () => {
    process.env["LOCAL_PG_PASSWORD"] = "s3cret-value";
    try {
      expect(JSON.stringify(parse(text))).not.toContain("s3cret-value");
    } finally {
      delete process.env["LOCAL_PG_PASSWORD"];
    }
  });
});

describe("parseConfig: aws per target", () => {
  const HOST_A = "orders-dev.abc123xyz.eu-west-2.rds.amazonaws.com";
  const HOST_B = "billing-prod.def456uvw.us-east-1.rds.amazonaws.com";
  const target = (name: string, host: string, port: number, ...extra: string[]) => [`  ${name}:`, `    host: ${host}`, `    listen: ${port}`, "    user: u", "    tunnel: { driver: direct }", ...extra];

  it("stacks target over defaults over the top level, key by key", () => {
    const config = parse(
      yaml(
        "aws: { profile: top, region: eu-west-2 }",
        "defaults:",
        "  aws: { profile: team-a }",
        "targets:",
        ...target("inherits", HOST_A, 7001),
        ...target("own-profile", HOST_A, 7002, "    aws: { profile: account-a }"),
        ...target("own-both", HOST_B, 7003, "    aws:", "      profile: account-b", "      region: us-east-1"),
        ...target("not-rds", "db.internal.example.com", 7004, "    aws: { region: ap-south-1 }"),
      ),
    );
    expect(config.aws).toEqual({ profile: "top", region: "eu-west-2" });
    expect(config.targets.map((t) => [t.name, t.aws])).toEqual([
      ["inherits", { profile: "team-a", region: "eu-west-2" }],
      ["own-profile", { profile: "account-a", region: "eu-west-2" }],
      ["own-both", { profile: "account-b", region: "us-east-1" }],
      // not an RDS name: nothing to check the region against
      ["not-rds", { profile: "team-a", region: "ap-south-1" }],
    ]);
  });

  it("leaves aws empty when nothing sets it", () => {
    expect(parse(yaml("targets:", ...target("a", HOST_A, 7001))).targets[0]?.aws).toEqual({});
  });

  it("refuses a configured region that disagrees with an RDS host, where that region was written", () => {
    expect(errorsOf(yaml("aws: { region: eu-west-2 }", "targets:", ...target("b", HOST_B, 7001)))).toEqual([
      `${FILE}:1:16: aws.region: target b: region eu-west-2 does not match its host ${HOST_B}, which is in us-east-1: set aws: { region: us-east-1 } on target b (or correct its host)`,
    ]);
    expect(errorsOf(yaml("defaults:", "  aws: { region: eu-west-2 }", "targets:", ...target("b", HOST_B, 7001, "    aws: { profile: account-b }")))).toEqual([
      `${FILE}:2:18: defaults.aws.region: target b: region eu-west-2 does not match its host ${HOST_B}, which is in us-east-1: set aws: { region: us-east-1 } on target b (or correct its host)`,
    ]);
    expect(errorsOf(yaml("targets:", ...target("a", HOST_A, 7001, "    aws:", "      region: eu-west-1")))).toEqual([
      `${FILE}:8:15: targets.a.aws.region: target a: region eu-west-1 does not match its host ${HOST_A}, which is in eu-west-2: set aws: { region: eu-west-2 } on target a (or correct its host)`,
    ]);
  });

  it("checks a target's aws keys like the top level's", () => {
    expect(errorsOf(yaml("targets:", ...target("a", HOST_A, 7001, "    aws: { profle: x, region: Frankfurt }")))).toEqual([
      `${FILE}:7:12: targets.a.aws.profle: unknown key (did you mean "profile"?)`,
      `${FILE}:7:31: targets.a.aws.region: expected an AWS region such as eu-west-2, got "Frankfurt"`,
    ]);
  });
});

describe("parseConfig: notifications", () => {
  const targets = ["targets:", "  a:", "    host: a.example.com", "    listen: 7001", "    user: u", "    tunnel: { driver: direct }"];
  it("defaults desktop notifications on, and lets them be switched off", () => {
    expect(parse(yaml(...targets)).notifications).toEqual({ desktop: true });
    expect(parse(yaml("notifications: { desktop: false }", ...targets)).notifications).toEqual({ desktop: false });
  });
  it("refuses anything but a boolean, and unknown keys", () => {
    expect(errorsOf(yaml("notifications: { desktop: no, sound: true }", ...targets)).join("\n")).toMatch(/notifications\.desktop: .*\n.*notifications\.sound: unknown key/s);
  });
});

describe("parseConfig: smaller valid shapes", () => {
  it("accepts a file with only targets, follows YAML aliases, and expands ~ in plugin paths", () => {
    const config = parse(
      yaml(
        "targets:",
        "  a:",
        "    host: a.example.com",
        "    listen: 7001",
        "    user: u",
        "    bastion: &bastion { instanceId: i-0123456789abcdef0 }",
        "    tunnel: { driver: plugin, pluginPath: ~/bin/session-manager-plugin }",
        "  b:",
        "    host: b.example.com",
        '    listen: "7002"',
        "    user: u",
        "    bastion: *bastion",
        "    tunnel: { driver: direct }",
      ),
    );
    expect(config.aws).toEqual({});
    expect(config.targets[0]?.tunnel.pluginPath).toBe("/home/u/bin/session-manager-plugin");
    expect(config.targets[1]?.bastion).toEqual({ instanceId: "i-0123456789abcdef0" });
    expect(config.targets[1]?.listen).toEqual([
      { host: "127.0.0.1", port: 7002 },
      { host: "::1", port: 7002 },
    ]);
  });

  it("does not require a bastion for the direct driver", () => {
    const config = parse(yaml("targets:", "  a:", "    host: a.example.com", "    listen: 7001", "    user: u", "    tunnel: { driver: direct }"));
    expect(config.targets[0]?.bastion).toBeUndefined();
    expect(config.targets[0]?.tunnel.address).toBeUndefined();
  });
});

describe("parseConfig: errors name file, line, column, key and what was expected", () => {
  const cases: Array<[string, string[], string]> = [
    [
      "a listen value that is not a port",
      ["targets:", "  orders-dev:", ...GOOD_TARGET, "    listen: abc"],
      `${FILE}:6:13: targets.orders-dev.listen: expected a port 1-65535 or "ADDRESS:PORT" on loopback, got "abc"`,
    ],
    [
      "a listen port out of range",
      ["targets:", "  orders-dev:", ...GOOD_TARGET, "    listen: 70000"],
      `${FILE}:6:13: targets.orders-dev.listen: expected a port 1-65535 or "ADDRESS:PORT" on loopback, got 70000`,
    ],
    [
      "a non-loopback listen address",
      ["targets:", "  orders-dev:", ...GOOD_TARGET, '    listen: "0.0.0.0:6432"'],
      `${FILE}:6:13: targets.orders-dev.listen: 0.0.0.0 is not a loopback address: listeners bind to loopback only (use 127.0.0.1, [::1] or a bare port; allowNonLoopback: true on the target exposes it to the network), got "0.0.0.0:6432"`,
    ],
    [
      "a listen host name instead of an IP",
      ["targets:", "  orders-dev:", ...GOOD_TARGET, "    listen: localhost:6432"],
      `${FILE}:6:13: targets.orders-dev.listen: expected a port 1-65535 or "ADDRESS:PORT" on loopback: the address must be an IP literal such as 127.0.0.1 or [::1], got "localhost:6432"`,
    ],
    [
      "a bad region",
      ["aws:", "  region: Frankfurt", "targets: {}"],
      `${FILE}:2:11: aws.region: expected an AWS region such as eu-west-2, got "Frankfurt"`,
    ],
    [
      "a target name that cannot be used in URLs",
      ["targets:", "  Orders.Dev:", ...GOOD_TARGET, "    listen: 6432"],
      `${FILE}:2:3: targets.Orders.Dev: expected a target name of lowercase letters, digits, "-" and "_", starting with a letter or digit (it is used in CLI commands and URLs), got "Orders.Dev"`,
    ],
    [
      "a host that is not a hostname",
      ["targets:", "  a:", "    host: https://db.example.com", "    user: u", "    listen: 6432", "    tunnel: { driver: direct }"],
      `${FILE}:3:11: targets.a.host: expected a hostname such as orders-dev.abc123xyz.eu-west-2.rds.amazonaws.com, got "https://db.example.com"`,
    ],
    [
      "a missing user",
      ["targets:", "  a:", "    host: db.example.com", "    listen: 6432", "    tunnel: { driver: direct }"],
      `${FILE}:2:3: targets.a.user: missing: expected the database user to log in as (here or in defaults.user)`,
    ],
    [
      "a missing host",
      ["targets:", "  a:", "    user: u", "    listen: 6432", "    tunnel: { driver: direct }"],
      `${FILE}:2:3: targets.a.host: missing: expected the database endpoint, e.g. orders-dev.abc123xyz.eu-west-2.rds.amazonaws.com`,
    ],
    [
      "an SSM driver without a bastion",
      ["targets:", "  a:", "    host: db.example.com", "    user: u", "    listen: 6432"],
      `${FILE}:2:3: targets.a.bastion: missing: tunnel driver native needs a bastion: set { instanceId: i-0123456789abcdef0 } or { tag: "Key=Value" } here or in defaults.bastion`,
    ],
    [
      "a port that is not a number",
      ["targets:", "  a:", ...GOOD_TARGET, "    listen: 6432", '    port: "5432x"'],
      `${FILE}:7:11: targets.a.port: expected a port 1-65535, got "5432x"`,
    ],
    [
      "a bad duration",
      ["defaults:", "  tunnel:", "    idleTimeout: 10 minutes", "targets: {}"],
      `${FILE}:3:18: defaults.tunnel.idleTimeout: expected a duration such as "30s", "10m", "1h" or a number of seconds (more than zero), got "10 minutes"`,
    ],
    [
      "too many sessions",
      ["defaults:", "  tunnel: { sessions: 9 }", "targets: {}"],
      `${FILE}:2:23: defaults.tunnel.sessions: expected a number of SSM sessions 1-8, got 9`,
    ],
    [
      "a misspelt driver",
      ["defaults:", "  tunnel: { driver: natve }", "targets: {}"],
      `${FILE}:2:21: defaults.tunnel.driver: expected one of native, plugin, direct, got "natve" (did you mean "native"?)`,
    ],
    [
      "a bad instance id",
      ["defaults:", "  bastion: { instanceId: i-xyz }", "targets: {}"],
      `${FILE}:2:26: defaults.bastion.instanceId: expected an EC2 instance id such as i-0123456789abcdef0, got "i-xyz"`,
    ],
    [
      "both bastion forms at once",
      ["defaults:", '  bastion: { instanceId: i-0123456789abcdef0, tag: "Name=x" }', "targets: {}"],
      `${FILE}:2:12: defaults.bastion: expected exactly one of instanceId or tag`,
    ],
    [
      "a tag without '='",
      ["defaults:", "  bastion: { tag: db-bastion }", "targets: {}"],
      `${FILE}:2:19: defaults.bastion.tag: expected "Key=Value", e.g. "Name=db-bastion", got "db-bastion"`,
    ],
    [
      "clientTls that is not a boolean",
      ["defaults:", "  clientTls: maybe", "targets: {}"],
      `${FILE}:2:14: defaults.clientTls: expected true or false, got "maybe"`,
    ],
    [
      "~user paths",
      ["defaults:", "  tls: { ca: ~bob/ca.pem }", "targets: {}"],
      `${FILE}:2:14: defaults.tls.ca: expected a file path; "~user/" is not supported (use "~/", an absolute path or a path relative to the config file), got "~bob/ca.pem"`,
    ],
    [
      "address with a tunnelled driver",
      ["targets:", "  a:", ...GOOD_TARGET, "    listen: 6432", '    tunnel: { address: "10.0.0.5:5432" }'],
      `${FILE}:7:24: targets.a.tunnel.address: only applies with tunnel driver direct (this target's driver is native)`,
    ],
    [
      "idleTimeout on an eager target",
      ["targets:", "  a:", ...GOOD_TARGET, "    listen: 6432", "    tunnel: { idleTimeout: 30s }"],
      `${FILE}:7:28: targets.a.tunnel.idleTimeout: only applies with tunnel mode lazy (this target's mode is eager)`,
    ],
    [
      "address in defaults",
      ["defaults:", '  tunnel: { address: "127.0.0.1:5432" }', "targets: {}"],
      `${FILE}:2:13: defaults.tunnel.address: not allowed in defaults: address is set per target (with driver: direct)`,
    ],
    [
      "a per-target key in defaults",
      ["defaults:", "  listen: 6432", "targets: {}"],
      `${FILE}:2:3: defaults.listen: not allowed in defaults: listen is set per target`,
    ],
    [
      "a missing targets section",
      ["aws: { region: eu-west-2 }"],
      `${FILE}:1:1: targets: missing: expected a mapping of target names to their settings`,
    ],
    [
      "a document that is not a mapping",
      ["- just", "- a list"],
      `${FILE}:1:1: expected a mapping with aws, defaults and targets, got a list`,
    ],
    ["an empty file", ["# nothing but a comment"], `${FILE}: the file is empty: expected a mapping with a targets section (see config/example.yaml)`],
  ];

  it.each(cases)("%s", (_name, lines, message) => {
    expect(errorsOf(yaml(...lines))).toEqual([message]);
  });

  it("carries structured issues with line, column and key", () => {
    try {
      parse(yaml("targets:", "  orders-dev:", ...GOOD_TARGET, "    listen: abc"));
      expect.unreachable();
    } catch (error) {
      expect(error).toBeInstanceOf(ConfigError);
      const configError = error as ConfigError;
      expect(configError.file).toBe(FILE);
      expect(configError.issues).toEqual([
        { line: 6, column: 13, key: "targets.orders-dev.listen", message: `expected a port 1-65535 or "ADDRESS:PORT" on loopback, got "abc"` },
      ]);
    }
  });
});

describe("parseConfig: unknown and duplicate keys", () => {
  it("refuses an unknown key with a suggestion when it is close to a known one", () => {
    expect(errorsOf(yaml("targets:", "  a:", ...GOOD_TARGET, "    listen: 6432", "    databse: orders"))).toEqual([
      `${FILE}:7:5: targets.a.databse: unknown key (did you mean "database"?)`,
    ]);
  });

  it("lists the known keys when nothing is close", () => {
    expect(errorsOf(yaml("aws:", "  credentials: x", "targets: {}"))).toEqual([
      `${FILE}:2:3: aws.credentials: unknown key (expected one of: profile, region)`,
    ]);
  });

  it("refuses duplicate keys, naming the first one's line", () => {
    expect(errorsOf(yaml("targets:", "  a:", ...GOOD_TARGET, "    listen: 6432", "    listen: 6433"))).toEqual([
      `${FILE}:7:5: targets.a.listen: duplicate key (first given on line 6)`,
    ]);
  });

  it("refuses a target name given twice", () => {
    expect(errorsOf(yaml("targets:", "  a:", ...GOOD_TARGET, "    listen: 6432", "  a:", ...GOOD_TARGET, "    listen: 6433"))).toEqual([
      `${FILE}:7:3: targets.a: duplicate key (first given on line 2)`,
    ]);
  });
});

describe("parseConfig: listen conflicts", () => {
  it("refuses two targets on the same port, naming both", () => {
    expect(errorsOf(yaml("targets:", "  a:", ...GOOD_TARGET, "    listen: 6432", "  b:", ...GOOD_TARGET, "    listen: 6432"))).toEqual([
      `${FILE}:11:13: targets.b.listen: 127.0.0.1:6432 is already the listen address of target a (line 6): each target needs its own port`,
    ]);
  });

  it("sees that 127.0.0.1:PORT collides with a bare PORT", () => {
    expect(errorsOf(yaml("targets:", "  a:", ...GOOD_TARGET, "    listen: 6432", "  b:", ...GOOD_TARGET, '    listen: "127.0.0.1:6432"'))).toEqual([
      `${FILE}:11:13: targets.b.listen: 127.0.0.1:6432 is already the listen address of target a (line 6): each target needs its own port`,
    ]);
  });

  it("sees that [::1]:PORT collides with a bare PORT", () => {
    expect(errorsOf(yaml("targets:", "  a:", ...GOOD_TARGET, '    listen: "[::1]:6432"', "  b:", ...GOOD_TARGET, "    listen: 6432"))).toEqual([
      `${FILE}:11:13: targets.b.listen: [::1]:6432 is already the listen address of target a (line 6): each target needs its own port`,
    ]);
  });

  it("allows the same port on different loopback addresses", () => {
    const config = parse(yaml("targets:", "  a:", ...GOOD_TARGET, '    listen: "127.0.0.1:6432"', "  b:", ...GOOD_TARGET, '    listen: "[::1]:6432"'));
    expect(config.targets.map((t) => t.listen)).toEqual([[{ host: "127.0.0.1", port: 6432 }], [{ host: "::1", port: 6432 }]]);
  });
});

describe("parseConfig: local access opt-ins", () => {
  it("leaves both off unless written, and takes them from defaults or the target", () => {
    const config = parse(yaml("defaults: { allowOtherUsers: true }", "targets:", "  a:", ...GOOD_TARGET, "    listen: 6432", "  b:", ...GOOD_TARGET, "    listen: 6433", "    allowOtherUsers: false"));
    expect(config.targets.map((t) => t.allowOtherUsers)).toEqual([true, undefined]);
    expect(config.targets.map((t) => t.allowNonLoopback)).toEqual([undefined, undefined]);
  });

  it("lets allowNonLoopback: true (and only that) take a non-loopback listen address", () => {
    const config = parse(yaml("targets:", "  a:", ...GOOD_TARGET, '    listen: "192.0.2.10:6432"', "    allowNonLoopback: true"));
    expect(config.targets[0]).toMatchObject({ listen: [{ host: "192.0.2.10", port: 6432 }], allowNonLoopback: true });
    expect(errorsOf(yaml("targets:", "  a:", ...GOOD_TARGET, '    listen: "192.0.2.10:6432"', "    allowNonLoopback: false"))).toEqual([
      `${FILE}:6:13: targets.a.listen: 192.0.2.10 is not a loopback address: listeners bind to loopback only (use 127.0.0.1, [::1] or a bare port; allowNonLoopback: true on the target exposes it to the network), got "192.0.2.10:6432"`,
    ]);
  });

  it("wants true or false, not words that look like them", () => {
    expect(errorsOf(yaml("defaults: { allowOtherUsers: yes, allowNonLoopback: 1 }", "targets:", "  a:", ...GOOD_TARGET, "    listen: 6432"))).toEqual([
      `${FILE}:1:30: defaults.allowOtherUsers: expected true or false, got "yes"`,
      `${FILE}:1:53: defaults.allowNonLoopback: expected true or false, got 1`,
    ]);
  });
});

describe("parseConfig: pool", () => {
  it("is on by default: 4 parked for 5m, one spare through SSM and none for direct", () => {
    const config = parse(yaml("targets:", "  a:", ...GOOD_TARGET, "    listen: 6432", "  b:", ...GOOD_TARGET, "    listen: 6433", "    tunnel: { driver: direct }"));
    expect(config.targets.map((t) => t.pool)).toEqual([
      { idle: 4, idleTimeoutMs: 300_000, spares: 1 },
      { idle: 4, idleTimeoutMs: 300_000, spares: 0 },
    ]);
  });

  it("stacks the target's keys over defaults', and false turns it off (true turns it back on)", () => {
    const config = parse(
      yaml(
        "defaults: { pool: { idle: 10, idleTimeout: 30s } }",
        "targets:",
        "  a:",
        ...GOOD_TARGET,
        "    listen: 6432",
        "    pool: { spares: 3 }",
        "  b:",
        ...GOOD_TARGET,
        "    listen: 6433",
        "    pool: false",
        "  c:",
        ...GOOD_TARGET,
        "    listen: 6434",
      ),
    );
    expect(config.targets.map((t) => t.pool)).toEqual([{ idle: 10, idleTimeoutMs: 30_000, spares: 3 }, false, { idle: 10, idleTimeoutMs: 30_000, spares: 1 }]);
    const off = parse(yaml("defaults: { pool: false }", "targets:", "  a:", ...GOOD_TARGET, "    listen: 6432", "  b:", ...GOOD_TARGET, "    listen: 6433", "    pool: true"));
    expect(off.targets.map((t) => t.pool)).toEqual([false, { idle: 4, idleTimeoutMs: 300_000, spares: 1 }]);
  });

  it("names file:line:col and the key for bad values", () => {
    expect(
      errorsOf(yaml("defaults:", "  pool: { idle: -1, idleTimeout: soon, spares: 9, size: 2 }", "targets:", "  a:", ...GOOD_TARGET, "    listen: 6432", "    pool: off")),
    ).toEqual([
      `${FILE}:2:17: defaults.pool.idle: expected a number of parked connections 0-100, got -1`,
      `${FILE}:2:34: defaults.pool.idleTimeout: expected a duration such as "30s", "10m", "1h" or a number of seconds (more than zero), got "soon"`,
      `${FILE}:2:48: defaults.pool.spares: expected a number of spare connections 0-8, got 9`,
      `${FILE}:2:51: defaults.pool.size: unknown key (expected one of: idle, idleTimeout, spares)`,
      `${FILE}:9:11: targets.a.pool: expected false, or a mapping such as { idle: 4, idleTimeout: 5m, spares: 1 }, got "off"`,
    ]);
  });
});

describe("parseConfig: every problem at once", () => {
  it("reports all errors in file order, not just the first", () => {
    const lines = errorsOf(
      yaml(
        "aws:",
        "  region: eu-wst",
        "  profle: x",
        "targets:",
        "  a:",
        "    host: db.example.com",
        "    listen: 65536",
        "    user: u",
        "    tunnel: { driver: direct, sessions: 0 }",
        "  b:",
        "    host: db.example.com",
        "    listen: 6500",
        "    tunnel: { driver: direct }",
      ),
    );
    expect(lines).toEqual([
      `${FILE}:2:11: aws.region: expected an AWS region such as eu-west-2, got "eu-wst"`,
      `${FILE}:3:3: aws.profle: unknown key (did you mean "profile"?)`,
      `${FILE}:7:13: targets.a.listen: expected a port 1-65535 or "ADDRESS:PORT" on loopback, got 65536`,
      `${FILE}:9:41: targets.a.tunnel.sessions: expected a number of SSM sessions 1-8, got 0`,
      `${FILE}:10:3: targets.b.user: missing: expected the database user to log in as (here or in defaults.user)`,
    ]);
  });

  it("does not pile knock-on errors on a broken default", () => {
    // The bad driver in defaults is one error; the targets do not each complain about a bastion.
    expect(errorsOf(yaml("defaults:", "  tunnel: { driver: ssm }", "targets:", "  a:", "    host: h.example.com", "    user: u", "    listen: 6432"))).toEqual([
      `${FILE}:2:21: defaults.tunnel.driver: expected one of native, plugin, direct, got "ssm"`,
    ]);
  });
});

describe("parseConfig: secrets stay out of messages", () => {
  it("does not echo a password written directly under auth", () => {
    const messages = errorsOf(yaml("targets:", "  a:", ...GOOD_TARGET, "    listen: 6432", "    auth: hunter2-secret"));
    expect(messages).toEqual([`${FILE}:7:11: targets.a.auth: expected iam, { password: { env: VAR } } or { password: { file: PATH } }`]);
  });

  it("does not echo a password written under auth.password", () => {
    const messages = errorsOf(yaml("targets:", "  a:", ...GOOD_TARGET, "    listen: 6432", "    auth: { password: hunter2-secret }"));
    expect(messages).toEqual([
      `${FILE}:7:23: targets.a.auth.password: expected { env: VAR } or { file: PATH } (the password itself does not go in the config file)`,
    ]);
    expect(messages.join("\n")).not.toContain("hunter2");
  });

  it("does not echo an invalid env value", () => {
    const messages = errorsOf(yaml("targets:", "  a:", ...GOOD_TARGET, "    listen: 6432", "    auth: { password: { env: 'p@ss w0rd' } }"));
    expect(messages).toEqual([
      `${FILE}:7:30: targets.a.auth.password.env: expected an environment variable name (letters, digits, _; not starting with a digit)`,
    ]);
  });
});

describe("parseConfig: YAML syntax errors", () => {
  it("reports the position of a syntax error", () => {
    expect(errorsOf(yaml("targets:", "  a:", "    host: [db.example.com", "    listen: 6432"))).toEqual([
      `${FILE}:4:5: YAML syntax error: Flow sequence in block collection must be sufficiently indented and end with a ]`,
    ]);
  });

  it("reports a tab indentation error at its line", () => {
    const [first] = errorsOf("targets:\n\ta: 1\n");
    expect(first).toMatch(new RegExp(`^${FILE}:2:1: YAML syntax error: `));
  });
});

describe("parseConfig: Unix-socket listeners", () => {
  const RUN = "/run/user/1000/rdsd";
  const withSocket = (text: string, platform: NodeJS.Platform = "linux") => parseConfig(text, FILE, { home: HOME, runtimeDir: RUN, platform });
  const socketErrors = (text: string, platform: NodeJS.Platform = "linux"): string[] => {
    try {
      withSocket(text, platform);
    } catch (error) {
      expect(error).toBeInstanceOf(ConfigError);
      return (error as ConfigError).message.split("\n");
    }
    throw new Error("expected the config to be refused");
  };

  it("socket: true puts libpq's .s.PGSQL.<listen port> in a per-target directory under the runtime directory", () => {
    const [a] = withSocket(yaml("targets:", "  orders-dev:", ...GOOD_TARGET, "    listen: 6432", "    socket: true")).targets;
    expect(a?.listen).toHaveLength(2);
    expect(a?.socket).toEqual({ directory: `${RUN}/sockets/orders-dev`, port: 6432, path: `${RUN}/sockets/orders-dev/.s.PGSQL.6432`, managed: true });
  });

  it("makes listen optional: a socket-only target is named after port 5432; socket: PATH chooses the directory", () => {
    const config = withSocket(yaml("targets:", "  a:", ...GOOD_TARGET, "    socket: true", "  b:", ...GOOD_TARGET, "    socket: ~/run/pg", "    listen: 7001"));
    expect(config.targets[0]?.listen).toEqual([]);
    expect(config.targets[0]?.socket?.path).toBe(`${RUN}/sockets/a/.s.PGSQL.5432`);
    expect(config.targets[1]?.socket).toEqual({ directory: "/home/u/run/pg", port: 7001, path: "/home/u/run/pg/.s.PGSQL.7001", managed: false });
  });

  it("socket: false, or no socket, keeps listen required", () => {
    expect(socketErrors(yaml("targets:", "  a:", ...GOOD_TARGET, "    socket: false"))).toEqual([
      `${FILE}:2:3: targets.a.listen: missing: expected a port 1-65535 or "ADDRESS:PORT" on loopback (or socket: true for a Unix socket only)`,
    ]);
    expect(withSocket(yaml("targets:", "  a:", ...GOOD_TARGET, "    listen: 6432")).targets[0]?.socket).toBeUndefined();
  });

  it("refuses a socket path longer than the OS allows (107 bytes on Linux, 103 on macOS) with the key's position and the fix", () => {
    const dir = `/tmp/${"d".repeat(85)}`; // + "/.s.PGSQL.6432" = 104 bytes
    const text = yaml("targets:", "  a:", ...GOOD_TARGET, "    listen: 6432", `    socket: ${dir}`);
    expect(withSocket(text, "linux").targets[0]?.socket?.path).toHaveLength(104);
    expect(socketErrors(text, "darwin")).toEqual([
      `${FILE}:7:13: targets.a.socket: the socket path ${dir}/.s.PGSQL.6432 is 104 bytes, longer than the 103 bytes darwin allows for a Unix socket: choose a shorter directory (e.g. socket: /tmp/rdsd-a)`,
    ]);
    const deepRun = `/home/u/${"r".repeat(80)}/rdsd`;
    const tooLong = () => parseConfig(yaml("targets:", "  orders-dev:", ...GOOD_TARGET, "    socket: true"), FILE, { home: HOME, runtimeDir: deepRun, platform: "linux" });
    expect(tooLong).toThrow(
      `${FILE}:6:13: targets.orders-dev.socket: the socket path ${deepRun}/sockets/orders-dev/.s.PGSQL.5432 is 126 bytes, longer than the 107 bytes linux allows for a Unix socket: set socket: to a shorter directory (e.g. socket: /tmp/rdsd-orders-dev), or point RDSD_RUNTIME_DIR at a shorter runtime directory`,
    );
  });

  it("refuses other socket values, socket in defaults, and two targets on one socket file", () => {
    expect(socketErrors(yaml("targets:", "  a:", ...GOOD_TARGET, "    socket: 1"))).toEqual([
      `${FILE}:6:13: targets.a.socket: expected true (a private directory under rdsd's runtime directory), false, or a directory path, got 1`,
    ]);
    expect(socketErrors(yaml("defaults: { socket: true }", "targets:", "  a:", ...GOOD_TARGET, "    listen: 6432"))).toEqual([
      `${FILE}:1:13: defaults.socket: not allowed in defaults: socket is set per target`,
    ]);
    expect(socketErrors(yaml("targets:", "  a:", ...GOOD_TARGET, "    socket: /tmp/pg", "  b:", ...GOOD_TARGET, "    socket: /tmp/pg"))).toEqual([
      `${FILE}:11:13: targets.b.socket: /tmp/pg/.s.PGSQL.5432 is already the socket of target a (line 6): give each target its own directory or port`,
    ]);
  });
});

describe("parseConfig: session parameters and readOnly", () => {
  it("merges defaults' and the target's parameters name by name, as PostgreSQL reads the values", () => {
    const config = parse(
      yaml(
        "defaults:",
        "  parameters: { statement_timeout: 30s, Search_Path: 'app, public', jit: false }",
        "targets:",
        "  a:",
        ...GOOD_TARGET,
        "    listen: 6432",
        "    parameters:",
        "      search_path: 'a b\\c'",
        "      idle_in_transaction_session_timeout: 5min",
        "      pg_stat_statements.track: all",
        "      work_mem: 65536",
        "      application_name: ''",
        "  b:",
        ...GOOD_TARGET,
        "    listen: 6433",
        "    readOnly: true",
      ),
    );
    const [a, b] = config.targets;
    expect(a?.parameters).toEqual({
      statement_timeout: "30s",
      search_path: "a b\\c",
      jit: "off",
      idle_in_transaction_session_timeout: "5min",
      "pg_stat_statements.track": "all",
      work_mem: "65536",
      application_name: "",
    });
    expect(a?.readOnly).toBeUndefined();
    expect(b?.readOnly).toBe(true);
    expect(b?.parameters).toEqual({ statement_timeout: "30s", search_path: "app, public", jit: "off", default_transaction_read_only: "on" });
  });

  it("lets a target turn off a default readOnly, and counts an explicit default_transaction_read_only: on as read-only", () => {
    const config = parse(
      yaml("defaults: { readOnly: true }", "targets:", "  a:", ...GOOD_TARGET, "    listen: 6432", "    readOnly: false", "  b:", ...GOOD_TARGET, "    listen: 6433", "    readOnly: false", "    parameters: { default_transaction_read_only: true }"),
    );
    expect(config.targets[0]?.readOnly).toBeUndefined();
    expect(config.targets[0]?.parameters).toBeUndefined();
    expect(config.targets[1]?.readOnly).toBe(true);
    expect(config.targets[1]?.parameters).toEqual({ default_transaction_read_only: "on" });
  });

  it("refuses a bad setting name with file:line:col, and values PostgreSQL cannot take", () => {
    expect(errorsOf(yaml("targets:", "  a:", ...GOOD_TARGET, "    listen: 6432", "    parameters:", "      statement-timeout: 5s", "      search_path: [a, b]", "      lock_timeout: 10m", "      x.: 1"))).toEqual([
      `${FILE}:8:7: targets.a.parameters.statement-timeout: expected a PostgreSQL setting name (letters, digits, "_", "$"; dotted for extension settings such as pg_stat_statements.track), got "statement-timeout"`,
      `${FILE}:9:20: targets.a.parameters.search_path: expected a string, number, boolean or duration such as "30s" or "5min", got a list`,
      `${FILE}:10:21: targets.a.parameters.lock_timeout: PostgreSQL does not read "m" as minutes: write "10min" (its units are us, ms, s, min, h, d)`,
      `${FILE}:11:7: targets.a.parameters.x.: expected a PostgreSQL setting name (letters, digits, "_", "$"; dotted for extension settings such as pg_stat_statements.track), got "x."`,
    ]);
    expect(errorsOf(yaml("defaults: { parameters: [statement_timeout] }", "targets: {}"))).toEqual([
      `${FILE}:1:25: defaults.parameters: expected a mapping of PostgreSQL settings, e.g. { statement_timeout: 30s, search_path: app }, got a list`,
    ]);
  });

  it("refuses readOnly: true beside default_transaction_read_only: off, and readOnly values other than true/false", () => {
    expect(errorsOf(yaml("targets:", "  a:", ...GOOD_TARGET, "    listen: 6432", "    readOnly: true", "    parameters: { default_transaction_read_only: off }"))).toEqual([
      `${FILE}:7:15: targets.a.readOnly: readOnly: true contradicts parameters.default_transaction_read_only: off: keep one of them`,
    ]);
    expect(errorsOf(yaml("targets:", "  a:", ...GOOD_TARGET, "    listen: 6432", "    readOnly: yes"))).toEqual([`${FILE}:7:15: targets.a.readOnly: expected true or false, got \"yes\"`]);
  });
});
