import { readFile, writeFile, mkdtemp, rm, mkdir } from "node:fs/promises";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { createCertificateAuthority } from "@rdsd/certs";
import { loadConfig } from "@rdsd/config";
import { controlSocketPath, requestDaemon, runtimeDir } from "@rdsd/control";
import { runDaemon } from "@rdsd/daemon";
import { unixSocketInUse } from "@rdsd/sock-diag";
import { startEmulator } from "@rdsd/ssm-emulator";
import { freePort } from "@rdsd/tunnel";
import { formatProbe } from "../commands/control.js";
import { CliError, EXIT, VERSION } from "../exit.js";
import { startLocalPostgres } from "./local-postgres.js";
import { startRdsFront } from "./rds-front.js";
import { rdsTokenProblem } from "./rds-token.js";

// Inside the CLI package (its "files"), so an installed rdsd has it without the checkout.
const DEMO_CONFIG = fileURLToPath(new URL("../../config/demo.yaml", import.meta.url));

/**
 * `rdsd demo`: the whole real path with no AWS account. The SSM emulator plays AWS (API + agent), a local
 * PostgreSQL plays the database behind an RDS-like front door (TLS for the RDS names, IAM token checked
 * against the emulator's keys), and the daemon runs the CLI package's config/demo.yaml with the native SSM tunnel.
 */
export async function demoCommand(opts: { check?: boolean } = {}): Promise<number> {
  const say = (line: string) => process.stderr.write(`demo: ${line}\n`);
  const socketPath = controlSocketPath();
  if (await unixSocketInUse(socketPath)) {
    throw new CliError(`an rdsd daemon is already running on ${socketPath}`, "stop it first (`rdsd stop`), or give the demo its own socket: RDSD_RUNTIME_DIR=$(mktemp -d) npx rdsd demo");
  }
  const dir = await mkdtemp(join(tmpdir(), "rdsd-demo-"));
  const cleanups: Array<() => Promise<unknown>> = [() => rm(dir, { recursive: true, force: true })];
  const cleanup = async () => {
    for (const step of cleanups.splice(0).reverse()) await step().catch((err: unknown) => say(`cleanup: ${(err as Error).message}`));
  };
  const stop = new AbortController();
  const onSignal = () => stop.abort();
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  try {
    const { configPath, config } = await writeDemoConfig(dir);
    const region = config.aws.region ?? "eu-west-2";
    const ca = await createCertificateAuthority({ commonName: "rdsd demo RDS CA" });
    await writeFile(join(dir, "demo-ca.pem"), ca.certPem);
    const certificate = await ca.issueServerCertificate({ dnsNames: config.targets.map((t) => t.host) });

    const users = [...new Set(config.targets.map((t) => t.user))];
    const databases = [...new Set(config.targets.flatMap((t) => (t.database ? [t.database] : [])))];
    const postgres = await startLocalPostgres(
      [
        "CREATE ROLE rds_iam NOLOGIN",
        ...users.flatMap((u) => [`CREATE ROLE "${u}" LOGIN`, `GRANT rds_iam TO "${u}"`]),
        ...databases.map((d) => `CREATE DATABASE "${d}" OWNER "${users[0]}"`),
      ],
      say,
    );
    cleanups.push(() => postgres.stop());

    const accounts = demoAccounts(config.targets);
    const keysFor = (profile: string | undefined) => (accounts.find((a) => a.profile === profile) ?? accounts[0]!);
    const front = await startRdsFront({
      certificate,
      port: config.targets[0]?.port ?? 5432,
      postgresSocket: postgres.socketPath,
      checkToken: (token, host, user) => {
        const target = config.targets.find((t) => t.host === host);
        if (!target) return `no database answers to the name ${host}`;
        // Signed for this database's account: the other account's key does not open it.
        const { accessKeyId, secretAccessKey } = keysFor(target.aws.profile);
        return rdsTokenProblem(token, { host, port: target.port, user, region, accessKeyId, secretAccessKey, now: new Date() });
      },
      log: say,
    });
    cleanups.push(() => front.close());
    const emulator = await startEmulator({
      region,
      credentials: accounts.map(({ accessKeyId, secretAccessKey, account }) => ({ accessKeyId, secretAccessKey, account })),
      instances: accounts.map((a) => ({ instanceId: a.bastion, tags: { Name: "rdsd-demo-bastion" }, account: a.account })),
      hostMap: config.targets.map((t) => ({ from: `${t.host}:${t.port}`, to: `127.0.0.1:${front.port}` })),
    });
    cleanups.push(() => emulator.close());
    say(`SSM emulator (the AWS side) at ${emulator.endpoint}: ${accounts.map((a) => `account ${a.account} (profile ${a.profile ?? "default"}, bastion ${a.bastion})`).join(", ")}`);

    // The daemon's AWS SDK talks to the emulator with each account's key, through a profile per account, never to AWS.
    await useEmulatorCredentials(emulator.endpoint, region, accounts, dir);
    let ready = false;
    let checked: Promise<boolean> | undefined;
    const code = await runDaemon({
      configPath,
      stateDir: join(dir, "state"),
      socketPath,
      logFile: join(dir, "state", "rdsd.log"),
      version: VERSION,
      console: false,
      handleSignals: false,
      signal: stop.signal,
      onReady: () => {
        ready = true;
        if (opts.check) checked = checkTargets(socketPath, config.targets.map((t) => t.name), say).finally(() => stop.abort());
        else process.stdout.write(instructions(config.targets, accounts));
      },
    });
    if (!ready) throw new CliError(`the demo daemon did not start (log: ${join(dir, "state", "rdsd.log")})`, null);
    say("stopped: daemon, SSM sessions, emulator and PostgreSQL");
    if (checked && !(await checked)) return EXIT.failure;
    return code;
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
    await cleanup();
  }
}

/** The demo config as it is, next to the demo's CA; a listen port already taken here is swapped for a free one. */
async function writeDemoConfig(dir: string) {
  let text = await readFile(DEMO_CONFIG, "utf8");
  for (const port of [...text.matchAll(/^\s+listen: (\d+)\s*$/gm)].map((m) => Number(m[1]))) {
    if (!(await portFree(port))) text = text.replace(new RegExp(`listen: ${port}\\b`), `listen: ${await freePort()}`);
  }
  const configPath = join(dir, "demo.yaml");
  await writeFile(configPath, text);
  await mkdir(join(dir, "state"), { recursive: true, mode: 0o700 });
  return { configPath, config: await loadConfig(configPath, { runtimeDir: runtimeDir() }) };
}

/** `rdsd demo --check`: each target probed through the running daemon, as `rdsd test` does; true when all pass. */
async function checkTargets(socketPath: string, names: string[], say: (line: string) => void): Promise<boolean> {
  let allPassed = true;
  for (const target of names) {
    try {
      const report = await requestDaemon("test", { target }, { socketPath, timeoutMs: 120_000 });
      process.stdout.write(formatProbe(report) + "\n\n");
      allPassed &&= report.ok;
    } catch (err) {
      say(`cannot test ${target}: ${(err as Error).message}`);
      allPassed = false;
    }
  }
  return allPassed;
}

/** One emulated AWS account per distinct profile the demo's targets name, in config order. */
interface DemoAccount {
  profile: string | undefined;
  account: string;
  accessKeyId: string;
  secretAccessKey: string;
  bastion: string;
}

function demoAccounts(targets: { aws: { profile?: string } }[]): DemoAccount[] {
  const profiles = [...new Set(targets.map((t) => t.aws.profile))];
  return profiles.map((profile, i) => {
    const n = String(i + 1);
    return {
      profile,
      account: n.repeat(12).slice(0, 12),
      accessKeyId: `AKIDRDSDDEMO${n.padStart(8, "0")}`,
      secretAccessKey: `rdsd-demo-secret-not-a-real-aws-key-${n.padStart(4, "0")}`,
      bastion: `i-0de${n.padStart(14, "0")}`,
    };
  });
}

/** A temporary AWS config and credentials file with a profile per account (a target without a profile gets `default`). */
async function useEmulatorCredentials(endpoint: string, region: string, accounts: DemoAccount[], dir: string): Promise<void> {
  const configFile = join(dir, "aws-config");
  const credentialsFile = join(dir, "aws-credentials");
  await writeFile(configFile, accounts.map((a) => `[${a.profile ? `profile ${a.profile}` : "default"}]\nregion = ${region}\n`).join("\n"), { mode: 0o600 });
  await writeFile(credentialsFile, accounts.map((a) => `[${a.profile ?? "default"}]\naws_access_key_id = ${a.accessKeyId}\naws_secret_access_key = ${a.secretAccessKey}\n`).join("\n"), { mode: 0o600 });
  for (const name of ["AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_WEB_IDENTITY_TOKEN_FILE"]) delete process.env[name];
  Object.assign(process.env, {
    AWS_REGION: region,
    AWS_ENDPOINT_URL_SSM: endpoint,
    AWS_EC2_METADATA_DISABLED: "true",
    AWS_CONFIG_FILE: configFile,
    AWS_SHARED_CREDENTIALS_FILE: credentialsFile,
  });
}

function instructions(targets: { name: string; listen: { host: string; port: number }[]; user: string; database?: string; aws: { profile?: string } }[], accounts: DemoAccount[]): string {
  const lines = ["", "rdsd demo is running: the SSM emulator plays AWS, a local PostgreSQL plays RDS (TLS, IAM tokens).", ""];
  for (const t of targets) {
    const port = t.listen[0]!.port;
    const account = accounts.find((a) => a.profile === t.aws.profile);
    lines.push(`${t.name} (AWS account ${account?.account ?? "?"}, profile ${t.aws.profile ?? "default"}):`);
    lines.push(`  psql "host=localhost port=${port}${t.database ? ` dbname=${t.database}` : ""}"`);
    lines.push(`  GUI (DBeaver, DataGrip, pgAdmin): postgresql://${t.user}@localhost:${port}${t.database ? `/${t.database}` : ""}   (no password)`);
  }
  const rdsd = cliAsTyped();
  lines.push("", `In another terminal: ${rdsd} status, ${rdsd} test ${targets[0]?.name ?? "TARGET"}. Ctrl-C stops everything.`, "");
  return lines.join("\n");
}

/**
 * How to run the CLI from another terminal, exactly: `npx rdsd` (a checkout or a global install), with the
 * demo's own control socket directory when it was given one, since the other shell would look elsewhere.
 */
function cliAsTyped(): string {
  const runtime = process.env.RDSD_RUNTIME_DIR;
  return `${runtime ? `RDSD_RUNTIME_DIR=${shellQuote(runtime)} ` : ""}npx rdsd`;
}

function shellQuote(text: string): string {
  return /^[\w@%+=:,./-]+$/.test(text) ? text : `'${text.replace(/'/g, "'\\''")}'`;
}

function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.once("error", () => resolve(false));
    server.listen(port, "127.0.0.1", () => server.close(() => resolve(true)));
  });
}

export { EXIT };
