import { Argument, Command, CommanderError, Option } from "commander";
import { CliError, EXIT, VERSION } from "./exit.js";

// Thin: parse, ask the daemon, print. Every command's module is imported only when it runs, so
// `rdsd status` loads commander and the control client, never the daemon, the AWS SDK or winston.

type Action = () => Promise<number>;

function run(action: Action): () => Promise<void> {
  return async () => {
    process.exitCode = await action();
  };
}

const program = new Command()
  .name("rdsd")
  .description("Private RDS PostgreSQL on localhost: SSM tunnels, IAM login, verify-full TLS")
  .version(VERSION)
  .exitOverride()
  .showHelpAfterError("(run `rdsd --help` for usage)")
  .configureOutput({ outputError: (text, write) => write(text) });

const configOption = () => new Option("--config <file>", "config file (default: $RDSD_CONFIG, else ~/.config/rdsd/config.yaml)");

program
  .command("daemon")
  .description("run the daemon in the foreground (what systemd and launchd run)")
  .addOption(configOption())
  .addOption(new Option("--background", "log to the log file only (used by `rdsd start`)").hideHelp())
  .action((opts: { config?: string; background?: boolean }) => run(async () => (await import("./commands/daemon.js")).daemonCommand(opts))());

program
  .command("start")
  .description("start the daemon in the background; returns once it is ready, or fails with why")
  .addOption(configOption())
  .action((opts: { config?: string }) => run(async () => (await import("./commands/start.js")).startCommand(opts))());

program
  .command("stop")
  .description("stop the daemon gracefully: clients get a grace period, SSM sessions are terminated, the socket is removed")
  .action(run(async () => (await import("./commands/control.js")).stopCommand()));

program
  .command("status")
  .description("per target: listen address, tunnel state, session, uptime, connections, parked and spare server connections, bytes, token age, last error")
  .argument("[target]", "only this target")
  .option("--json", "one JSON object with a `targets` array (stable shape, see README)")
  .action((target: string | undefined, opts: { json?: boolean }) => run(async () => (await import("./commands/status.js")).statusCommand(target, opts))());

program
  .command("restart")
  .description("restart one target's tunnel, or every target's")
  .argument("[target]", "only this target")
  .action((target: string | undefined) => run(async () => (await import("./commands/control.js")).restartCommand(target))());

program
  .command("reload")
  .description("re-read the config: add, change and remove targets without touching the others")
  .option("--json", "what changed, as JSON")
  .action((opts: { json?: boolean }) => run(async () => (await import("./commands/control.js")).reloadCommand(opts))());

program
  .command("test")
  .description("probe a target end to end: credentials, bastion, tunnel, TLS, login, SELECT 1")
  .argument("<target>", "the target to probe")
  .option("--json", "the stages as JSON")
  .action((target: string, opts: { json?: boolean }) => run(async () => (await import("./commands/control.js")).testCommand(target, opts))());

program
  .command("logs")
  .description("the daemon's log (works without a running daemon)")
  .option("-f, --follow", "keep printing new lines")
  .option("-n, --lines <count>", "how many lines to show first", "50")
  .option("--json", "raw JSON lines")
  .action((opts: { follow?: boolean; lines: string; json?: boolean }) => run(async () => (await import("./commands/logs.js")).logsCommand(opts))());

program
  .command("doctor")
  .description("check this machine: config, credentials and SSO expiry, region, bastion, CA bundle, ports, plugin")
  .addOption(configOption())
  .option("--json", "the checks as JSON")
  .action((opts: { config?: string; json?: boolean }) => run(async () => (await import("./commands/doctor.js")).doctorCommand(opts))());

program
  .command("login")
  .description("run `aws sso login` once per expired SSO session the targets need, then have the daemon retry them")
  .addOption(configOption())
  .option("--all", "log in to every SSO session the targets use, expired or not")
  .action((opts: { config?: string; all?: boolean }) => run(async () => (await import("./commands/login.js")).loginCommand(opts))());

program
  .command("url")
  .description("print a connection string for a target")
  .argument("<target>", "the target")
  .option("--tls", "add sslmode=verify-full with rdsd's local CA")
  .option("--socket", "the target's Unix socket (host=<directory>, port=<n>) instead of its TCP address")
  .option("--json", "host, port, user, database and the URL as JSON")
  .action((target: string, opts: { json?: boolean; tls?: boolean; socket?: boolean }) => run(async () => (await import("./commands/url.js")).urlCommand(target, opts))());

program
  .command("psql")
  .description("run psql on a target (arguments after -- go to psql)")
  .argument("<target>", "the target")
  .argument("[psql-args...]", "passed to psql")
  .action((target: string, extra: string[]) => run(async () => (await import("./commands/url.js")).psqlCommand(target, extra))());

program
  .command("install-service")
  .description("write the systemd user unit (Linux) or the launchd agent (macOS) for this machine")
  .addOption(configOption())
  .option("--print", "only print it")
  .addOption(new Option("--platform <name>", "linux or darwin (default: this machine)").choices(["linux", "darwin"]).hideHelp())
  .action((opts: { config?: string; print?: boolean; platform?: string }) => run(async () => (await import("./commands/install-service.js")).installServiceCommand(opts))());

program
  .command("demo")
  .description("a full working setup with no AWS account: the SSM emulator and a local PostgreSQL behind it")
  .option("--check", "start it, test every target end to end (as `rdsd test`), stop everything and exit (1 if a stage failed)")
  .action((opts: { check?: boolean }) => run(async () => (await import("./demo/demo-command.js")).demoCommand(opts))());

program
  .command("ca")
  .description("print the path of rdsd's local CA certificate (trust it for sslmode=verify-full)")
  .action(
    run(async () => {
      const [{ loadOrCreateLocalCa }, { stateDir }] = await Promise.all([import("@rdsd/certs"), import("@rdsd/control")]);
      process.stdout.write((await loadOrCreateLocalCa(stateDir())).caPath + "\n");
      return EXIT.ok;
    }),
  );

program
  .command("completion")
  .description("print the shell completion script (commands, flags and the config's target names)")
  .addArgument(new Argument("<shell>", "bash, zsh or fish").choices(["bash", "zsh", "fish"]))
  .addHelpText("after", "\nLoad it: bash: eval \"$(rdsd completion bash)\"  zsh: source <(rdsd completion zsh)  fish: rdsd completion fish | source")
  .action((shell: "bash" | "zsh" | "fish") => run(async () => (await import("./commands/completion.js")).completionCommand(shell, program))());

// Called by the completion scripts while completing: the config's target names, one a line.
program
  .command("__complete", { hidden: true })
  .argument("<what>", "targets")
  .addOption(configOption())
  .action((what: string, opts: { config?: string }) =>
    run(async () => {
      if (what !== "targets") throw new CliError(`cannot complete ${what}`, "the completion scripts ask for `targets`", EXIT.usage);
      return (await import("./commands/completion.js")).completeTargetsCommand(opts);
    })(),
  );

async function main(argv: string[]): Promise<void> {
  try {
    await program.parseAsync(argv);
  } catch (err) {
    if (err instanceof CommanderError) {
      // --help and --version exit 0; everything else commander rejects is a usage error.
      process.exitCode = err.exitCode === 0 ? EXIT.ok : EXIT.usage;
      return;
    }
    if (err instanceof CliError) {
      process.stderr.write(`rdsd: ${err.message}\n${err.fix ? `  ${err.fix}\n` : ""}`);
      process.exitCode = err.code;
      return;
    }
    process.stderr.write(`rdsd: ${(err as Error).message}\n`);
    process.exitCode = EXIT.failure;
  }
}

await main(process.argv);
