export * from "./daemon.js";
export * from "./logger.js";
export * from "./paths.js";
export * from "./rds-ca-bundle.js";
export type { TargetState, TargetStatus } from "./target.js";
