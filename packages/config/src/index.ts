// @rdsd/config: the YAML config file -> validated, fully resolved, typed config.
export type {
  AuthConfig,
  AwsSettings,
  BastionConfig,
  ConfigDiff,
  ListenAddress,
  SocketListener,
  PasswordSource,
  RdsdConfig,
  TargetConfig,
  TunnelConfig,
  TunnelDriver,
  TunnelMode,
  UpstreamTls,
} from "./types.js";
export { ConfigError, formatIssue, type ConfigIssue } from "./issues.js";
export { parseConfig, type ParseOptions } from "./parse.js";
export { loadConfig, resolveConfigPath, type ConfigPathSources } from "./load.js";
export { diffConfigs } from "./diff.js";
export { parseDuration } from "./duration.js";
export { isLoopback, joinHostPort } from "./addresses.js";
export { isValidRegionName, regionFromRdsHostname } from "./aws-names.js";
export { DEFAULT_IDLE_TIMEOUT_MS, DEFAULT_PLUGIN_PATH, DEFAULT_PORT } from "./target.js";
export { maxSocketPathBytes, socketFileName, DEFAULT_SOCKET_PORT } from "./socket.js";
export { READ_ONLY_PARAMETER } from "./parameters.js";
