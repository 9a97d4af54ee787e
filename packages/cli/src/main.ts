import { Command, CommanderError } from "commander";
import { ConfigError, resolveConfigPath } from "@rdsd/config";
import { createLogger, Daemon, stateDir } from "@rdsd/daemon";
import { join } from "node:path";
import { homedir } from "node:os";
import { loadOrCreateLocalCa } from "@rdsd/certs";

/** Exit codes of the CLI contract (product.md). */
const EXIT = { ok: 0, failure: 1, usage: 2, notRunning: 3 } as const;

const program = new Command()
  .name("rdsd")
  .description("Private RDS PostgreSQL on localhost: SSM tunnels, IAM login, verify-full TLS")
  .version("0.1.0")
  .exitOverride()
  .showHelpAfterError("(run `rdsd --help` for usage)");

program
  .command("daemon")
  .description("run the daemon in the foreground (what systemd and launchd run)")
  .option("--config <file>", "config file (default: $RDSD_CONFIG, else ~/.config/rdsd/config.yaml)")
  .action(async (opts: { config?: string }) => {
    process.exitCode = await runDaemon(opts.config);
  });

program
  .command("ca")
  .description("print the path of rdsd's local CA certificate (trust it for sslmode=verify-full)")
  .action(async () => {
    const { caPath } = await loadOrCreateLocalCa(stateDir());
    console.log(caPath);
  });

async function runDaemon(configFlag: string | undefined): Promise<number> {
  const dir = stateDir();
  const logger = createLogger({ console: true, file: join(dir, "rdsd.log") });
  const configPath = resolveConfigPath({ ...(configFlag ? { flag: configFlag } : {}), env: process.env, home: homedir() });
  const daemon = new Daemon({ configPath, stateDir: dir, logger });
  try {
    await daemon.start();
  } catch (err) {
    console.error(err instanceof ConfigError ? err.message : `rdsd: ${(err as Error).message}`);
    await daemon.stop();
    await logger.close();
    return EXIT.failure;
  }
  logger.info("rdsd is running", { config: configPath, pid: process.pid });

  return new Promise((resolve) => {
    let stopping = false;
    const stop = async (signal: string) => {
      if (stopping) return;
      stopping = true;
      logger.info("stopping", { signal });
      await daemon.stop();
      await logger.close();
      resolve(EXIT.ok);
    };
    process.once("SIGTERM", () => void stop("SIGTERM"));
    process.once("SIGINT", () => void stop("SIGINT"));
    process.on("SIGHUP", () => {
      daemon.reload().catch((err: unknown) => {
        logger.error("reload failed; the running configuration stays", { error: err instanceof ConfigError ? err.message : (err as Error).message });
      });
    });
  });
}

async function main(argv: string[]): Promise<void> {
  try {
    await program.parseAsync(argv);
  } catch (err) {
    if (err instanceof CommanderError) {
      // --help and --version exit 0; everything else commander rejects is a usage error.
      process.exitCode = err.exitCode === 0 ? EXIT.ok : EXIT.usage;
      return;
    }
    console.error(`rdsd: ${(err as Error).message}`);
    process.exitCode = EXIT.failure;
  }
}

await main(process.argv);
