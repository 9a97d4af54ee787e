import { spawn, type ChildProcess } from "node:child_process";
import { createHash } from "node:crypto";
import { once } from "node:events";
import { mkdir, writeFile } from "node:fs/promises";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { createCertificateAuthority } from "@rdsd/certs";
import type { DaemonStatus } from "@rdsd/control";
import { startEmulator, verifySigV4, type Emulator } from "@rdsd/ssm-emulator";
import { freePort, runCommand, startPostgres, tempDir, type PostgresServer, type TempDir } from "@rdsd/testkit";
import { startRdsFront, type RdsFront } from "../packages/cli/src/demo/rds-front.js";
import { rdsTokenProblem } from "../packages/cli/src/demo/rds-token.js";

// Two AWS accounts in one emulator, an RDS stand-in that checks each database's IAM tokens against its own
// account's key, one PostgreSQL behind it, and a temporary AWS config + credentials file: what a daemon with a
// profile per target meets. The daemon itself runs as a real process (the compiled CLI).

export const RDSD = fileURLToPath(new URL("../packages/cli/bin/rdsd.js", import.meta.url));

export interface Account {
  account: string;
  accessKeyId: string;
  secretAccessKey: string;
  bastion: string;
  host: string;
  user: string;
}

export const ACCOUNT_A: Account = {
  account: "111111111111",
  accessKeyId: "AKIDTESTACCOUNTA0001",
  secretAccessKey: "account-a-secret-not-a-real-aws-key-0001",
  bastion: "i-0aaaaaaaaaaaaaaa1",
  host: "orders-dev.abc123xyz.eu-west-2.rds.amazonaws.com",
  user: "iam_orders",
};
export const ACCOUNT_B: Account = {
  account: "222222222222",
  accessKeyId: "AKIDTESTACCOUNTB0002",
  secretAccessKey: "account-b-secret-not-a-real-aws-key-0002",
  bastion: "i-0bbbbbbbbbbbbbbb2",
  host: "billing-prod.def456uvw.eu-west-2.rds.amazonaws.com",
  user: "iam_billing",
};
const ACCOUNTS = [ACCOUNT_A, ACCOUNT_B];

/** One login the RDS stand-in saw: the token checked against every account's key. */
export interface TokenCheck {
  host: string;
  user: string;
  /** Accounts whose secret the token verifies with. */
  verifiesWith: string[];
}

/** A request an AWS stand-in (SSO, STS) received. */
export interface StandInRequest {
  path: string;
  /** SSO: the bearer token; STS: the access key id that signed the call (after its signature was checked). */
  caller: string;
  /** STS: the role asked for; SSO: the account asked for. */
  asked: string;
}

export interface StandIn {
  url: string;
  requests: StandInRequest[];
}

export interface AccountsWorld {
  dir: TempDir;
  /** SSO's GetRoleCredentials (AWS_ENDPOINT_URL_SSO): answers for a bearer token in `validSsoTokens` with the asked account's keys. */
  sso: StandIn;
  validSsoTokens: Set<string>;
  /** STS's AssumeRole (AWS_ENDPOINT_URL_STS): checks the signature against `stsCallers`, answers with the role's account's keys. */
  sts: StandIn;
  stsCallers: { accessKeyId: string; secretAccessKey: string }[];
  /** Writes what `aws sso login` leaves in ~/.aws/sso/cache for an sso-session. */
  writeSsoCache(session: string, accessToken: string, expiresAt: Date): Promise<void>;
  writeAwsConfig(lines: string[]): Promise<void>;
  writeAwsCredentials(lines: string[]): Promise<void>;
  emulator: Emulator;
  postgres: PostgresServer;
  front: RdsFront;
  caPath: string;
  awsConfigFile: string;
  awsCredentialsFile: string;
  tokenChecks: TokenCheck[];
  /** The daemon's environment: no AWS keys, only the temporary shared files. */
  env: NodeJS.ProcessEnv;
  close(): Promise<void>;
}

export async function startAccountsWorld(): Promise<AccountsWorld> {
  const dir = await tempDir("rdsd-accounts-");
  const ca = await createCertificateAuthority({ commonName: "rdsd accounts test RDS CA" });
  const caPath = join(dir.path, "rds-ca.pem");
  await writeFile(caPath, ca.certPem);
  const certificate = await ca.issueServerCertificate({ dnsNames: ACCOUNTS.map((a) => a.host) });
  const postgres = await startPostgres();
  for (const a of ACCOUNTS) await postgres.admin(`CREATE ROLE ${a.user} LOGIN`);

  const tokenChecks: TokenCheck[] = [];
  const front = await startRdsFront({
    certificate,
    port: 5432,
    postgresSocket: join(postgres.socketDir, `.s.PGSQL.${postgres.port}`),
    checkToken: (token, host, user) => {
      const owner = ACCOUNTS.find((a) => a.host === host);
      if (!owner) return `no database answers to the name ${host}`;
      const verify = (a: Account) => rdsTokenProblem(token, { host, port: 5432, user, region: "eu-west-2", accessKeyId: a.accessKeyId, secretAccessKey: a.secretAccessKey, now: new Date() });
      tokenChecks.push({ host, user, verifiesWith: ACCOUNTS.filter((a) => verify(a) === null).map((a) => a.account) });
      return verify(owner);
    },
  });
  const emulator = await startEmulator({
    credentials: ACCOUNTS.map((a) => ({ accessKeyId: a.accessKeyId, secretAccessKey: a.secretAccessKey, account: a.account })),
    instances: ACCOUNTS.map((a) => ({ instanceId: a.bastion, tags: { Name: "db-bastion" }, account: a.account })),
    hostMap: ACCOUNTS.map((a) => ({ from: `${a.host}:5432`, to: `127.0.0.1:${front.port}` })),
  });

  const awsDir = join(dir.path, "aws");
  await mkdir(awsDir, { recursive: true });
  const awsConfigFile = join(awsDir, "config");
  const awsCredentialsFile = join(awsDir, "credentials");
  // Account A reaches SSM through its `services` section, account B through its own endpoint_url: no
  // AWS_ENDPOINT_URL_SSM, so each target's SSM calls can only find the emulator through its own profile.
  await writeFile(
    awsConfigFile,
    [
      "[profile account-a]",
      "region = eu-west-2",
      "services = emulator-ssm",
      "[profile account-b]",
      "region = eu-west-2",
      `endpoint_url = ${emulator.endpoint}`,
      "[services emulator-ssm]",
      "ssm =",
      `  endpoint_url = ${emulator.endpoint}`,
      "",
    ].join("\n"),
  );
  await writeFile(
    awsCredentialsFile,
    ACCOUNTS.map((a, i) => `[account-${"ab"[i]}]\naws_access_key_id = ${a.accessKeyId}\naws_secret_access_key = ${a.secretAccessKey}\n`).join("\n"),
  );

  const servers: Server[] = [];
  const validSsoTokens = new Set<string>();
  const sso = await standIn(servers, (req, _body, res, requests) => {
    const url = new URL(req.url ?? "/", "http://localhost");
    const bearer = String(req.headers["x-amz-sso_bearer_token"] ?? "");
    const asked = url.searchParams.get("account_id") ?? "";
    requests.push({ path: url.pathname, caller: bearer, asked });
    const account = ACCOUNTS.find((a) => a.account === asked);
    if (url.pathname !== "/federation/credentials" || !validSsoTokens.has(bearer) || !account) {
      res.writeHead(401, { "content-type": "application/json", "x-amzn-errortype": "UnauthorizedException" });
      res.end(JSON.stringify({ message: "Session token not found or invalid" }));
      return;
    }
    // Role credentials that last a second (a compressed clock): the SDK asks again for nearly every use, so an
    // expired SSO session shows at the next SSM call instead of an hour later.
    const roleCredentials = { accessKeyId: account.accessKeyId, secretAccessKey: account.secretAccessKey, sessionToken: `sso-session-${account.account}`, expiration: Date.now() + 1_000 };
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify({ roleCredentials }));
  });
  const stsCallers: { accessKeyId: string; secretAccessKey: string }[] = [];
  const sts = await standIn(servers, async (req, body, res, requests) => {
    const form = new URLSearchParams(body.toString("utf8"));
    const role = form.get("RoleArn") ?? "";
    const scope = /Credential=[^/]+\/\d{8}\/([^/]+)\/([^/]+)\//.exec(String(req.headers.authorization ?? ""));
    let caller: string;
    try {
      caller = (await verifySigV4({ method: req.method ?? "", path: req.url ?? "/", headers: req.headers, body }, stsCallers, { region: scope?.[1] ?? "", service: "sts" })).accessKeyId;
    } catch (err) {
      requests.push({ path: form.get("Action") ?? "", caller: "refused", asked: role });
      res.writeHead(403, { "content-type": "text/xml" });
      res.end(`<ErrorResponse><Error><Type>Sender</Type><Code>SignatureDoesNotMatch</Code><Message>${(err as Error).message}</Message></Error></ErrorResponse>`);
      return;
    }
    requests.push({ path: form.get("Action") ?? "", caller, asked: role });
    const account = ACCOUNTS.find((a) => role.startsWith(`arn:aws:iam::${a.account}:role/`));
    if (form.get("Action") !== "AssumeRole" || !account) {
      res.writeHead(403, { "content-type": "text/xml" });
      res.end(`<ErrorResponse><Error><Type>Sender</Type><Code>AccessDenied</Code><Message>not authorized to assume ${role}</Message></Error></ErrorResponse>`);
      return;
    }
    const expiration = new Date(Date.now() + 60 * 60_000).toISOString();
    res.writeHead(200, { "content-type": "text/xml" });
    res.end(
      `<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><AssumeRoleResult><Credentials>` +
        `<AccessKeyId>${account.accessKeyId}</AccessKeyId><SecretAccessKey>${account.secretAccessKey}</SecretAccessKey>` +
        `<SessionToken>assumed-${account.account}</SessionToken><Expiration>${expiration}</Expiration></Credentials>` +
        `<AssumedRoleUser><AssumedRoleId>AROATESTROLE:rdsd</AssumedRoleId><Arn>arn:aws:sts::${account.account}:assumed-role/rdsd/rdsd</Arn></AssumedRoleUser>` +
        `</AssumeRoleResult><ResponseMetadata><RequestId>00000000-0000-0000-0000-000000000000</RequestId></ResponseMetadata></AssumeRoleResponse>`,
    );
  });

  const env: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(process.env)) if (!name.startsWith("AWS_")) env[name] = value;
  Object.assign(env, {
    HOME: dir.path,
    RDSD_STATE_DIR: join(dir.path, "state"),
    RDSD_RUNTIME_DIR: join(dir.path, "run"),
    AWS_CONFIG_FILE: awsConfigFile,
    AWS_SHARED_CREDENTIALS_FILE: awsCredentialsFile,
    AWS_EC2_METADATA_DISABLED: "true",
    AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: "true",
    AWS_ENDPOINT_URL_SSO: sso.url,
    AWS_ENDPOINT_URL_STS: sts.url,
    NO_COLOR: "1",
  });
  const ssoCacheDir = join(dir.path, ".aws", "sso", "cache");
  await mkdir(ssoCacheDir, { recursive: true });

  return {
    dir,
    emulator,
    postgres,
    front,
    caPath,
    awsConfigFile,
    awsCredentialsFile,
    tokenChecks,
    env,
    sso,
    validSsoTokens,
    sts,
    stsCallers,
    writeSsoCache: async (session, accessToken, expiresAt) => {
      // The SDK's cache name: sha1 of the sso-session name.
      const file = join(ssoCacheDir, `${createHash("sha1").update(session).digest("hex")}.json`);
      await writeFile(file, JSON.stringify({ startUrl: "https://example-corp.awsapps.com/start", region: "eu-west-1", accessToken, expiresAt: expiresAt.toISOString() }));
    },
    writeAwsConfig: (lines) => writeFile(awsConfigFile, lines.join("\n") + "\n"),
    writeAwsCredentials: (lines) => writeFile(awsCredentialsFile, lines.join("\n") + "\n"),
    close: async () => {
      await Promise.all(servers.map((s) => new Promise((resolve) => s.close(resolve))));
      await emulator.close();
      await front.close();
      await postgres.stop();
      await dir.cleanup();
    },
  };
}

type StandInHandler = (req: IncomingMessage, body: Buffer, res: ServerResponse, requests: StandInRequest[]) => void | Promise<void>;

async function standIn(servers: Server[], handler: StandInHandler): Promise<StandIn> {
  const requests: StandInRequest[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => void Promise.resolve(handler(req, Buffer.concat(chunks), res, requests)).catch(() => res.destroy()));
  });
  servers.push(server);
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, requests };
}

/** The SSO profile lines for one account: an sso-session profile, as `aws configure sso` writes it. */
export function ssoProfile(profile: string, session: string, account: Account): string[] {
  return [
    `[profile ${profile}]`,
    `sso_session = ${session}`,
    `sso_account_id = ${account.account}`,
    "sso_role_name = DbAccess",
    "region = eu-west-2",
    `[sso-session ${session}]`,
    "sso_start_url = https://example-corp.awsapps.com/start",
    "sso_region = eu-west-1",
    "sso_registration_scopes = sso:account:access",
  ];
}

/** A config with one target per account, each naming its profile. */
export async function writeAccountsConfig(
  world: AccountsWorld,
  options: { extra?: string; profiles?: { a: string; b: string }; extraTargets?: string[] } = {},
): Promise<{ configPath: string; ports: { a: number; b: number } }> {
  const extra = options.extra ?? "";
  const profiles = options.profiles ?? { a: "account-a", b: "account-b" };
  const ports = { a: await freePort(), b: await freePort() };
  const configPath = join(world.dir.path, "rdsd.yaml");
  await writeFile(
    configPath,
    [
      extra,
      "defaults:",
      "  bastion: { tag: Name=db-bastion }",
      `  tls: { ca: ${world.caPath} }`,
      "  tunnel: { driver: native }",
      "targets:",
      "  orders:",
      `    host: ${ACCOUNT_A.host}`,
      `    listen: "127.0.0.1:${ports.a}"`,
      `    user: ${ACCOUNT_A.user}`,
      "    database: postgres",
      `    aws: { profile: ${profiles.a} }`,
      "  billing:",
      `    host: ${ACCOUNT_B.host}`,
      `    listen: "127.0.0.1:${ports.b}"`,
      `    user: ${ACCOUNT_B.user}`,
      "    database: postgres",
      `    aws: { profile: ${profiles.b} }`,
      ...(options.extraTargets ?? []),
      "",
    ].join("\n"),
  );
  return { configPath, ports };
}

export interface RunningDaemon {
  process: ChildProcess;
  output(): string;
  stop(): Promise<number | null>;
}

/** `rdsd daemon --config PATH` until it says it is running. */
export async function startDaemon(configPath: string, env: NodeJS.ProcessEnv): Promise<RunningDaemon> {
  const child = spawn(process.execPath, [RDSD, "daemon", "--config", configPath], { env, stdio: ["ignore", "ignore", "pipe"] });
  let output = "";
  const exited = once(child, "exit");
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`daemon not running after 60 s: ${output}`)), 60_000);
    child.stderr!.on("data", (c: Buffer) => ((output += c.toString()), output.includes("rdsd is running") && (clearTimeout(timer), resolve())));
    child.once("exit", (code) => (clearTimeout(timer), reject(new Error(`daemon exited with ${code}: ${output}`))));
  }).catch((err: unknown) => {
    child.kill("SIGKILL");
    throw err;
  });
  return {
    process: child,
    output: () => output,
    stop: async () => {
      if (child.exitCode !== null) return child.exitCode;
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 30_000);
      const [code, signal] = (await exited) as [number | null, NodeJS.Signals | null];
      clearTimeout(timer);
      if (signal === "SIGKILL") throw new Error(`daemon did not stop within 30 s of SIGTERM: ${output.slice(-3000)}`);
      return code;
    },
  };
}

export function rdsd(args: string[], env: NodeJS.ProcessEnv) {
  return runCommand(process.execPath, [RDSD, ...args], { env, timeoutMs: 60_000 });
}

export async function daemonStatus(env: NodeJS.ProcessEnv): Promise<DaemonStatus> {
  return JSON.parse((await rdsd(["status", "--json"], env)).stdout) as DaemonStatus;
}
