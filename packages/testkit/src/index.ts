export { hasCommand, runCommand, waitForExit, type ChildExit, type CommandResult, type RunCommandOptions } from "./command.js";
export { startPostgres, type PostgresServer, type StartPostgresOptions } from "./postgres.js";
export { findPostgres, pgClientEnv, postgresBinDir, type PostgresInstallation } from "./postgres-bin.js";
export { childrenOf, processesWorkingIn } from "./proc.js";
export { makeRdsLikeTls, type RdsLikeTls } from "./rds-tls.js";
export {
  recordingPlainServer,
  recordingTlsServer,
  type RecordingServer,
  type RecordingTlsServer,
} from "./recording-servers.js";
export { tempDir, type TempDir } from "./temp.js";
// One implementation for the product and its tests: the plugin driver needs it at run time.
export { freePort } from "@rdsd/tunnel";
export { seededBytes, seededRandom } from "./random.js";
export { readBytes, readHashed } from "./read-stream.js";
export { echoServer, relayServer, tcpServer, type TcpServer } from "./tcp-server.js";
export { notifyReceiver, type NotifyReceiver } from "./notify-socket.js";
export { crashedUnixListener, fullBacklogUnixListener, type FullBacklogUnixListener } from "./unix-listeners.js";
