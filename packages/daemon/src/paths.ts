// The paths live in @rdsd/control, so the CLI resolves them without loading the daemon.
export { controlSocketPath, logFilePath, runtimeDir, stateDir } from "@rdsd/control";
