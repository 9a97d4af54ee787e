export * from "./daemon.js";
export * from "./logger.js";
export * from "./paths.js";
export * from "./rds-ca-bundle.js";
export { runDaemon, type RunDaemonOptions } from "./run.js";
export { probeTarget } from "./probe.js";
export type { TunnelContext, TunnelFactory, TunnelHandle } from "./tunnel-seam.js";
export type { TargetState, TargetStatus } from "./target.js";
export { runDoctor, type DoctorCheck, type DoctorOptions, type DoctorStatus } from "./doctor.js";
