import { join } from "node:path";
import type { Emulator } from "@rdsd/ssm-emulator";

/**
 * The environment of an `rdsd` process run against the SSM emulator: its own state and runtime directories
 * under `dir`, the emulator's keys and endpoint, and nothing of the machine's AWS setup (no profile, no shared
 * files unless given, no instance metadata). The target's database password is in APP_PASSWORD.
 */
export function emulatorDaemonEnv(
  dir: string,
  emulator: Pick<Emulator, "credentials" | "endpoint">,
  options: { appPassword: string; awsConfigFile?: string; awsCredentialsFile?: string },
): NodeJS.ProcessEnv {
  return {
    ...process.env,
    RDSD_STATE_DIR: join(dir, "state"),
    RDSD_RUNTIME_DIR: join(dir, "run"),
    APP_PASSWORD: options.appPassword,
    AWS_ACCESS_KEY_ID: emulator.credentials.accessKeyId,
    AWS_SECRET_ACCESS_KEY: emulator.credentials.secretAccessKey,
    AWS_ENDPOINT_URL_SSM: emulator.endpoint,
    AWS_CONFIG_FILE: options.awsConfigFile ?? join(dir, "none"),
    AWS_SHARED_CREDENTIALS_FILE: options.awsCredentialsFile ?? join(dir, "none"),
    AWS_EC2_METADATA_DISABLED: "true",
    AWS_PROFILE: "",
    NO_COLOR: "1",
  };
}
