import { readFile } from "node:fs/promises";
import { SqlState } from "@rdsd/pg-wire";
import { ProxyError } from "./errors.js";

/** Where the upstream password comes from, and what the proxy may say about it. */
export interface UpstreamSecret {
  /** The password or IAM token itself. Sent only over verified TLS; never logged or shown. */
  value: string;
  /** A non-secret account of the secret, shown when the server rejects it (for IAM: what was signed, when). */
  provenance: string;
}

/**
 * How the proxy logs in upstream. `iam`: the server must ask for a cleartext password (RDS IAM) and gets a
 * token; a SCRAM or MD5 request means the user lacks rds_iam. `password`: SCRAM-SHA-256, MD5 or cleartext.
 */
export interface UpstreamAuth {
  method: "iam" | "password";
  /** Rejects with a ProxyError whose fix tells the user what to do (e.g. `aws sso login`). */
  secret(): Promise<UpstreamSecret>;
}

/** What an IAM token is signed for: the real RDS endpoint and port, never the local or tunnel address. */
export interface IamSigningKey {
  host: string;
  port: number;
  user: string;
  region: string;
}

/** A token cache (see @rdsd/iam's IamTokenCache): one signing shared by concurrent connects. */
export interface IamTokenSource {
  getToken(key: IamSigningKey): Promise<IamSigningKey & { token: string; signedAt: Date }>;
}

/** IAM login: a token per connect from the cache; credential failures become the user's fix. */
export function iamAuth(
  tokens: IamTokenSource,
  key: IamSigningKey,
  explainCredentialError: (err: unknown) => { message: string; fix: string },
): UpstreamAuth {
  return {
    method: "iam",
    async secret() {
      try {
        const t = await tokens.getToken(key);
        return {
          value: t.token,
          provenance: `token signed for host ${t.host}, port ${t.port}, user ${t.user}, region ${t.region} at ${t.signedAt.toISOString()}`,
        };
      } catch (err) {
        const { message, fix } = explainCredentialError(err);
        throw new ProxyError(`cannot sign an IAM token: ${message}`, fix, SqlState.invalidAuthorization);
      }
    },
  };
}

/** Where a configured password lives. Read at each connect, so a rotated secret applies without a restart. */
export type PasswordSource = { env: string } | { file: string };

export function passwordAuth(source: PasswordSource, env: NodeJS.ProcessEnv = process.env): UpstreamAuth {
  return {
    method: "password",
    async secret() {
      if ("env" in source) {
        const value = env[source.env];
        if (value === undefined || value === "") {
          throw new ProxyError(`the password variable ${source.env} is not set in the daemon's environment`, `set ${source.env} where rdsd runs (systemd: Environment=, launchd: EnvironmentVariables), or use auth.password.file`, SqlState.invalidPassword);
        }
        return { value, provenance: `password from environment variable ${source.env}` };
      }
      try {
        const value = (await readFile(source.file, "utf8")).replace(/\r?\n$/, "");
        return { value, provenance: `password from file ${source.file}` };
      } catch (err) {
        throw new ProxyError(`cannot read the password file ${source.file}: ${(err as NodeJS.ErrnoException).code ?? "error"}`, "check auth.password.file for this target and the file's permissions", SqlState.invalidPassword);
      }
    },
  };
}
