import { homedir } from "node:os";
import { resolveConfigPath } from "@rdsd/config";
import { controlSocketPath, logFilePath, stateDir } from "@rdsd/control";
import { runDaemon } from "@rdsd/daemon";
import { VERSION } from "../exit.js";

/** `rdsd daemon`: the foreground daemon (systemd, launchd, and what `rdsd start` runs detached). */
export async function daemonCommand(opts: { config?: string; background?: boolean }): Promise<number> {
  const configPath = resolveConfigPath({ ...(opts.config ? { flag: opts.config } : {}), env: process.env, home: homedir() });
  const code = await runDaemon({
    configPath,
    stateDir: stateDir(),
    socketPath: controlSocketPath(),
    logFile: logFilePath(),
    version: VERSION,
    // Detached by `rdsd start`: the JSON log file is the log; a terminal is not there to read lines.
    console: !opts.background,
    onReady: ({ pid }) => {
      // `rdsd start` waits on this message, then lets the daemon go.
      if (process.send) {
        process.send({ ready: true, pid });
        process.disconnect?.();
      }
    },
  });
  // A stopped daemon ends now, whatever handles (SDK keep-alive agents) are still open.
  process.exit(code);
}
