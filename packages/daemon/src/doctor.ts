import { access, constants, lstat, readFile } from "node:fs/promises";
import net from "node:net";
import { delimiter, dirname, join } from "node:path";
import { ConfigError, joinHostPort, loadConfig, type RdsdConfig, type TargetConfig } from "@rdsd/config";
import { requestDaemon, type DaemonStatus } from "@rdsd/control";
import { configuredEndpoint, credentialProviderFor, describeCredentialError, regionConflict, resolveRegion } from "@rdsd/iam";
import { peerCredentialsAvailable, sockDiagOwnerLookup, type ExactOwnerLookup } from "@rdsd/proxy";
import { unixSocketInUse } from "@rdsd/sock-diag";
import { parseBundle, RDS_CA_BUNDLE_URL, rdsCaBundlePath } from "./rds-ca-bundle.js";
import { bastionCheck } from "./ssm-tunnels.js";
import { ssoSessionsInUse, targetsUsingAws, type SsoSessionUse } from "./sso-sessions.js";

export type DoctorStatus = "ok" | "warn" | "fail" | "skip";

export interface DoctorCheck {
  /** "config", "daemon", "region", "credentials", "bastion orders-dev", "ca bundle", "port orders-dev 127.0.0.1:6432", "plugin" */
  name: string;
  status: DoctorStatus;
  detail: string;
  /** What to do, for warn and fail. */
  fix: string | null;
}

export interface DoctorOptions {
  configPath: string;
  stateDir: string;
  socketPath: string;
  env?: NodeJS.ProcessEnv;
  now?: () => Date;
}

const SSO_EXPIRY_WARNING_MS = 60 * 60_000;

/** `rdsd doctor`: checks this machine for every configured target, each check on its own. */
export async function runDoctor(options: DoctorOptions): Promise<DoctorCheck[]> {
  const checks: DoctorCheck[] = [];
  const add = (check: DoctorCheck) => checks.push(check);
  let config: RdsdConfig;
  try {
    config = await loadConfig(options.configPath, { runtimeDir: dirname(options.socketPath) });
    add({ name: "config", status: "ok", detail: `${config.targets.length} target(s) in ${config.file}`, fix: null });
  } catch (err) {
    add({ name: "config", status: "fail", detail: err instanceof ConfigError ? err.message : (err as Error).message, fix: "fix the config file (see config/README.md)" });
    return checks;
  }

  const daemon = await daemonStatus(options.socketPath);
  add(daemon ? { name: "daemon", status: "ok", detail: `running, pid ${daemon.pid}, socket ${options.socketPath}`, fix: null } : { name: "daemon", status: "warn", detail: `not running (socket ${options.socketPath})`, fix: "`rdsd start`, or `rdsd install-service` to run it at login" });

  const now = options.now ?? (() => new Date());
  const needsAws = targetsUsingAws(config);
  const regions = new Map<string, string>();
  for (const target of needsAws) {
    try {
      const resolved = await resolveRegion({ region: target.aws.region, profile: target.aws.profile, host: target.host, env: options.env });
      // As the daemon refuses it: SSM calls sent to a region the RDS host's name contradicts.
      const conflict = target.tunnel.driver === "direct" ? undefined : regionConflict(resolved, { name: target.name, host: target.host, profile: target.aws.profile });
      if (conflict) {
        add({ name: `region ${target.name}`, status: "fail", detail: conflict.message, fix: conflict.fix });
        continue;
      }
      regions.set(target.name, resolved.region);
      add({ name: `region ${target.name}`, status: "ok", detail: `${resolved.region} (from ${resolved.source}${target.aws.profile ? `, profile ${target.aws.profile}` : ""})`, fix: null });
    } catch (err) {
      add({ name: `region ${target.name}`, status: "fail", detail: (err as Error).message, fix: (err as { fix?: string }).fix ?? "set aws.region for the target in the config, or the profile's region" });
    }
  }
  if (needsAws.length === 0) add({ name: "credentials", status: "skip", detail: "no target uses IAM or SSM", fix: null });
  const sso = await ssoSessionsInUse(config, now());
  for (const profile of [...new Set(needsAws.map((t) => t.aws.profile))]) {
    const users = needsAws.filter((t) => t.aws.profile === profile).map((t) => t.name);
    add(await credentialsCheck(profile, users, sso.find((s) => s.targets.some((t) => users.includes(t))), now));
  }

  for (const target of config.targets.filter((t) => t.tunnel.driver !== "direct")) {
    const region = regions.get(target.name);
    if (!region) {
      add({ name: `bastion ${target.name}`, status: "skip", detail: "no region", fix: null });
      continue;
    }
    try {
      const profile = target.aws.profile;
      const endpoint = await configuredEndpoint("SSM", profile);
      const found = await bastionCheck(target, { region, profile, credentials: credentialProviderFor({ profile }), endpoint });
      if (!found.online) add({ name: `bastion ${target.name}`, status: "fail", detail: `${found.instanceId} is not online in SSM`, fix: found.detail });
      else if (found.warning) add({ name: `bastion ${target.name}`, status: "warn", detail: `${found.instanceId} online (${found.detail}): ${found.warning.message}`, fix: found.warning.fix });
      else add({ name: `bastion ${target.name}`, status: "ok", detail: `${found.instanceId} online (${found.detail})`, fix: null });
    } catch (err) {
      const problem = err as Error & { fix?: string };
      add({ name: `bastion ${target.name}`, status: "fail", detail: problem.message, fix: problem.fix ?? "check the bastion settings" });
    }
  }

  for (const check of await caChecks(config.targets, options.stateDir)) add(check);
  for (const check of await portChecks(config.targets, daemon)) add(check);
  for (const check of await socketChecks(config.targets, daemon)) add(check);
  const peerCheck = socketPeerCheck(config.targets, process.platform, () => peerCredentialsAvailable());
  if (peerCheck) add(peerCheck);
  add(localUserCheck(config.targets, process.platform, () => sockDiagOwnerLookup()));
  for (const target of config.targets.filter((t) => t.tunnel.driver === "plugin")) add(await pluginCheck(target, options.env ?? process.env));
  return checks;
}

async function daemonStatus(socketPath: string): Promise<DaemonStatus | undefined> {
  if (!(await unixSocketInUse(socketPath))) return undefined;
  return requestDaemon("status", {}, { socketPath, timeoutMs: 5_000 }).catch(() => undefined);
}

/** One profile's credentials, with the targets that use it and, for SSO, when its session ends. */
async function credentialsCheck(profile: string | undefined, users: string[], sso: SsoSessionUse | undefined, now: () => Date): Promise<DoctorCheck> {
  const name = `credentials ${profile ?? "(default chain)"}`;
  const from = profile ? `profile ${profile}` : "the default chain (AWS_PROFILE, env, default profile, instance role)";
  const usedBy = `for ${users.join(", ")}`;
  const login = `\`aws sso login --profile ${sso?.loginProfile ?? profile ?? "default"}\` (or \`rdsd login\`)`;
  const ssoNote = sso === undefined ? "" : sso.expiresAt === null ? `; SSO session ${sso.session}: not logged in` : `; SSO session ${sso.session} ${sso.expired ? "expired" : "ends"} ${sso.expiresAt.toISOString()}`;
  try {
    const identity = await credentialProviderFor({ profile })();
    const key = `access key ...${identity.accessKeyId.slice(-4)}`;
    if (sso?.expired) return { name, status: "fail", detail: `${key} from ${from} ${usedBy}${ssoNote}`, fix: `run ${login}` };
    if (sso?.expiresAt && sso.expiresAt.getTime() - now().getTime() < SSO_EXPIRY_WARNING_MS) {
      return { name, status: "warn", detail: `${key} from ${from} ${usedBy}${ssoNote}`, fix: `renew soon: ${login}` };
    }
    // Role and credential_process credentials renew themselves; what ends for good is the SSO session (above).
    const when = identity.expiration ? `, current keys expire ${identity.expiration.toISOString()}` : ", no expiry";
    return { name, status: "ok", detail: `${key} from ${from} ${usedBy}${when}${ssoNote}`, fix: null };
  } catch (err) {
    const { message, fix } = describeCredentialError(err, profile);
    return { name, status: "fail", detail: `${message} (${usedBy})`, fix };
  }
}

/**
 * How the proxy tells which local user opened a connection: the kernel's exact lookup (sock_diag addon),
 * or the /proc/net/tcp scan that costs milliseconds of CPU per connection when the addon is not built.
 */
export function localUserCheck(targets: ReadonlyArray<{ allowOtherUsers?: boolean }>, platform: NodeJS.Platform, lookup: () => ExactOwnerLookup): DoctorCheck {
  const name = "local-user check";
  if (platform !== "linux") return { name, status: "skip", detail: `Linux only: on ${platform} connections from other local users are not told apart`, fix: null };
  if (targets.every((t) => t.allowOtherUsers)) return { name, status: "skip", detail: "every target sets allowOtherUsers: true", fix: null };
  const exact = lookup();
  if (exact.ok) return { name, status: "ok", detail: "each connection's owner comes from the kernel's exact socket lookup (netlink sock_diag)", fix: null };
  return {
    name,
    status: "warn",
    detail: `each connection's owner comes from scanning /proc/net/tcp, milliseconds of CPU per connection: ${exact.reason}`,
    fix: "install a C compiler (gcc/g++), make and python3, then run `npm run build:addon -w @rdsd/sock-diag` in the rdsd directory",
  };
}

async function caChecks(targets: TargetConfig[], stateDir: string): Promise<DoctorCheck[]> {
  const checks: DoctorCheck[] = [];
  const cas = [...new Set(targets.map((t) => t.tls.ca))];
  for (const ca of cas) {
    const users = targets.filter((t) => t.tls.ca === ca).map((t) => t.name).join(", ");
    const path = ca === "rds" ? rdsCaBundlePath(stateDir) : ca;
    const name = ca === "rds" ? "rds ca bundle" : `ca file`;
    try {
      const count = parseBundle(await readFile(path, "utf8"));
      checks.push({ name, status: "ok", detail: `${count} certificates at ${path} (for ${users})`, fix: null });
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (ca === "rds" && code === "ENOENT") {
        checks.push({ name, status: "warn", detail: `not downloaded yet; rdsd fetches it once from ${RDS_CA_BUNDLE_URL} into ${path}`, fix: "nothing to do if this machine reaches truststore.pki.rds.amazonaws.com; otherwise download it there by hand" });
      } else {
        checks.push({ name, status: "fail", detail: `${path}: ${code ?? (err as Error).message} (for ${users})`, fix: ca === "rds" ? `delete it and let rdsd download it again from ${RDS_CA_BUNDLE_URL}` : "point tls.ca at a readable PEM file of CA certificates" });
      }
    }
  }
  return checks;
}

async function portChecks(targets: TargetConfig[], daemon: DaemonStatus | undefined): Promise<DoctorCheck[]> {
  const checks: DoctorCheck[] = [];
  for (const target of targets) {
    for (const address of target.listen) {
      const shown = joinHostPort(address.host, address.port);
      const name = `port ${target.name} ${shown}`;
      if (daemon?.targets.some((t) => t.name === target.name && t.listen.includes(shown))) {
        checks.push({ name, status: "ok", detail: "in use by rdsd for this target", fix: null });
        continue;
      }
      const problem = await bindProblem(address.host, address.port);
      if (problem === null) checks.push({ name, status: "ok", detail: "free", fix: null });
      else if (problem === "EADDRNOTAVAIL" || problem === "EAFNOSUPPORT") checks.push({ name, status: "warn", detail: `${address.host} is not available on this machine`, fix: "fine if the other loopback address works; or listen on 127.0.0.1 only" });
      else checks.push({ name, status: "fail", detail: `taken by another program (${problem})`, fix: `free it (\`lsof -i :${address.port}\`) or change targets.${target.name}.listen` });
    }
  }
  return checks;
}

/** Each target's Unix socket: held by rdsd, free, stale (replaced at start), or someone else's. */
export async function socketChecks(targets: ReadonlyArray<Pick<TargetConfig, "name" | "socket">>, daemon: DaemonStatus | undefined): Promise<DoctorCheck[]> {
  const checks: DoctorCheck[] = [];
  for (const target of targets) {
    const socket = target.socket;
    if (!socket) continue;
    const name = `socket ${target.name} ${socket.path}`;
    if (daemon?.targets.some((t) => t.name === target.name && t.socket === socket.path)) {
      checks.push({ name, status: "ok", detail: `in use by rdsd for this target (psql "host=${socket.directory} port=${socket.port}")`, fix: null });
      continue;
    }
    const info = await lstat(socket.path).catch(() => undefined);
    if (info === undefined) checks.push({ name, status: "ok", detail: socket.managed ? "free (rdsd creates its private directory at start)" : "free", fix: null });
    else if (!info.isSocket()) checks.push({ name, status: "fail", detail: "the path exists and is not a socket", fix: `remove it, or choose another directory for targets.${target.name}.socket` });
    else if (await unixSocketInUse(socket.path)) checks.push({ name, status: "fail", detail: "another program listens on it", fix: `stop it, or choose another directory for targets.${target.name}.socket` });
    else checks.push({ name, status: "ok", detail: "a stale socket left by a daemon that did not stop cleanly; rdsd replaces it at start", fix: null });
  }
  return checks;
}

/** How the Unix sockets tell other users apart: the peer's credentials (SO_PEERCRED), or permissions alone. */
export function socketPeerCheck(targets: ReadonlyArray<{ socket?: unknown; allowOtherUsers?: boolean }>, platform: NodeJS.Platform, available: () => { ok: true } | { ok: false; reason: string }): DoctorCheck | undefined {
  const guarded = targets.filter((t) => t.socket !== undefined && !t.allowOtherUsers);
  if (guarded.length === 0) return undefined;
  const name = "socket peer check";
  const state = available();
  if (state.ok) return { name, status: "ok", detail: "each Unix-socket connection's uid comes from the kernel (SO_PEERCRED); other users are refused", fix: null };
  const detail = `other users are kept out of the Unix sockets by their permissions only (0600 socket, 0700 directory): ${state.reason}`;
  if (platform !== "linux") return { name, status: "skip", detail, fix: null };
  return { name, status: "warn", detail, fix: "install a C compiler (gcc/g++), make and python3, then run `npm run build:addon -w @rdsd/sock-diag` in the rdsd directory" };
}

function bindProblem(host: string, port: number): Promise<string | null> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.once("error", (err: NodeJS.ErrnoException) => resolve(err.code ?? "error"));
    server.listen({ host, port, exclusive: true }, () => server.close(() => resolve(null)));
  });
}

async function pluginCheck(target: TargetConfig, env: NodeJS.ProcessEnv): Promise<DoctorCheck> {
  const name = `plugin ${target.name}`;
  const wanted = target.tunnel.pluginPath;
  const candidates = wanted.includes("/") ? [wanted] : (env.PATH ?? "").split(delimiter).filter(Boolean).map((dir) => join(dir, wanted));
  for (const candidate of candidates) {
    try {
      await access(candidate, constants.X_OK);
      return { name, status: "ok", detail: candidate, fix: null };
    } catch {
      // next
    }
  }
  return { name, status: "fail", detail: `${wanted} not found${wanted.includes("/") ? "" : " on PATH"}`, fix: "install the Session Manager plugin (https://docs.aws.amazon.com/systems-manager/latest/userguide/session-manager-working-with-install-plugin.html), or use tunnel.driver: native" };
}
