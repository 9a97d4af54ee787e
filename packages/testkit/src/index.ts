export { runCommand, type CommandResult, type RunCommandOptions } from "./command.js";
export { startPostgres, type PostgresServer, type StartPostgresOptions } from "./postgres.js";
export { findPostgres, pgClientEnv, postgresBinDir, type PostgresInstallation } from "./postgres-bin.js";
export { processesWorkingIn } from "./proc.js";
export { makeRdsLikeTls, type RdsLikeTls } from "./rds-tls.js";
export {
  recordingPlainServer,
  recordingTlsServer,
  type RecordingServer,
  type RecordingTlsServer,
} from "./recording-servers.js";
export { freePort, tempDir, type TempDir } from "./temp.js";
export { seededRandom } from "./random.js";
