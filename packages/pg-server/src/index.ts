export { giveToServer, postgresOsUser, writeServerFile, type ServerUser } from "./server-user.js";
export {
  runServerProgram,
  serverCommand,
  serverEnv,
  type RunServerProgramOptions,
  type ServerCommand,
  type ServerProgramResult,
} from "./command.js";
export { initdb, type InitdbOptions } from "./initdb.js";
export { PostmasterStartError, startPostmaster, type Postmaster, type StartPostmasterOptions } from "./postmaster.js";
