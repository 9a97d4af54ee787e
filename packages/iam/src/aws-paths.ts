import { join } from "node:path";
import { getHomeDir } from "@smithy/core/config";

// The same lookups the SDK makes, so messages name the files it actually read.

/** The shared config file: $AWS_CONFIG_FILE, else ~/.aws/config. */
export function configFilePath(): string {
  return process.env["AWS_CONFIG_FILE"] || join(getHomeDir(), ".aws", "config");
}

/** The shared credentials file: $AWS_SHARED_CREDENTIALS_FILE, else ~/.aws/credentials. */
export function credentialsFilePath(): string {
  return process.env["AWS_SHARED_CREDENTIALS_FILE"] || join(getHomeDir(), ".aws", "credentials");
}
