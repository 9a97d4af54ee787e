import { Argument, Command, CommanderError, Option } from "commander";
import { CliError, EXIT, jsonError, VERSION } from "./exit.js";

// Thin: parse, ask the daemon, print. Every command's module is imported only when it runs, so
// `rdsd status` loads commander and the control client, never the daemon, the AWS SDK or winston.

// The AWS SDK warns on every start under Node 20 that its future releases need Node 22
// (process.emitWarning "NodeVersionSupportWarning"). rdsd declares Node 22 and still runs on 20.19:
// the SDK's own switch turns off that one notice, before any command loads the SDK; other warnings stay.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= "true";

/** Set by `rdsd daemon`: a closed stdout/stderr must not stop a running daemon. */
let runsDaemon = false;
/** Set when the command was given --json: failures are printed as a JSON error object too. */
let wantsJson = false;

// A reader that stops early (`rdsd logs | head -1`) closes the pipe: the command ends quietly, as `cat` does.
for (const stream of [process.stdout, process.stderr]) {
  stream.on("error", (err: NodeJS.ErrnoException) => {
    if (err.code !== "EPIPE") throw err;
    if (!runsDaemon) process.exit(process.exitCode ?? EXIT.ok);
  });
}

type Action = () => Promise<number>;

function run(action: Action, opts: { json?: boolean } = {}): () => Promise<void> {
  return async () => {
    wantsJson = opts.json === true;
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
  .action((opts: { config?: string; background?: boolean }) => {
    runsDaemon = true;
    return run(async () => (await import("./commands/daemon.js")).daemonCommand(opts))();
  });

program
  .command("start")
  .description("start the daemon in the background; returns once it answers (each target's state printed), or fails with why")
  .addOption(configOption())
  .option("--wait [timeout]", "return only when every eager target is ready (default 60s); exit 1 naming those that are not")
  .action((opts: { config?: string; wait?: string | true }) => run(async () => (await import("./commands/start.js")).startCommand(opts))());

program
  .command("stop")
  .description("stop the daemon gracefully: clients get a grace period, SSM sessions are terminated, the socket is removed (exit 0 when none runs)")
  .action(run(async () => (await import("./commands/control.js")).stopCommand()));

program
  .command("status")
  .description("per target: listen address, tunnel state, session, uptime, connections, parked and spare server connections, bytes, token age, last error")
  .argument("[target]", "only this target")
  .option("--json", "one JSON object with a `targets` array (stable shape, see README)")
  .action((target: string | undefined, opts: { json?: boolean }) => run(async () => (await import("./commands/status.js")).statusCommand(target, opts), opts)());

program
  .command("restart")
  .description("restart one target's tunnel, or every target's")
  .argument("[target]", "only this target")
  .action((target: string | undefined) => run(async () => (await import("./commands/control.js")).restartCommand(target))());

program
  .command("reload")
  .description("re-read the config: add, change and remove targets without touching the others")
  .option("--json", "what changed, as JSON")
  .action((opts: { json?: boolean }) => run(async () => (await import("./commands/control.js")).reloadCommand(opts), opts)());

program
  .command("test")
  .description("probe a target end to end: credentials, bastion, tunnel, TLS, login, SELECT 1")
  .argument("<target>", "the target to probe")
  .option("--json", "the stages as JSON")
  .action((target: string, opts: { json?: boolean }) => run(async () => (await import("./commands/control.js")).testCommand(target, opts), opts)());

program
  .command("logs")
  .description("the daemon's log (works without a running daemon)")
  .option("-f, --follow", "keep printing new lines")
  .option("-n, --lines <count>", "how many lines to show first", "50")
  .option("--json", "raw JSON lines")
  .action((opts: { follow?: boolean; lines: string; json?: boolean }) => run(async () => (await import("./commands/logs.js")).logsCommand(opts), opts)());

program
  .command("doctor")
  .description("check this machine: config, credentials and SSO expiry, region, bastion, CA bundle, ports, plugin")
  .addOption(configOption())
  .option("--json", "the checks as JSON")
  .action((opts: { config?: string; json?: boolean }) => run(async () => (await import("./commands/doctor.js")).doctorCommand(opts), opts)());

program
  .command("login")
  .description("run `aws sso login` once per expired SSO session the targets need, then have the daemon retry them")
  .addOption(configOption())
  .option("--all", "log in to every SSO session the targets use, expired or not")
  .action((opts: { config?: string; all?: boolean }) => run(async () => (await import("./commands/login.js")).loginCommand(opts))());

program
  .command("url")
  .description("print a connection string for a target (from the running daemon, else from the config)")
  .argument("<target>", "the target")
  .addOption(configOption())
  .option("--tls", "add sslmode=verify-full with rdsd's local CA")
  .option("--socket", "the target's Unix socket (host=<directory>, port=<n>) instead of its TCP address")
  .option("--json", "host, port, user, database and the URL as JSON")
  .action((target: string, opts: { config?: string; json?: boolean; tls?: boolean; socket?: boolean }) => run(async () => (await import("./commands/url.js")).urlCommand(target, opts), opts)());

program
  .command("psql")
  .description("run psql on a target (arguments after -- go to psql)")
  .argument("<target>", "the target")
  .argument("[psql-args...]", "passed to psql")
  .addOption(configOption())
  .action((target: string, extra: string[], opts: { config?: string }) => run(async () => (await import("./commands/url.js")).psqlCommand(target, extra, opts))());

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
  .description("print the path of rdsd's local CA certificate, the running daemon's (trust it for sslmode=verify-full)")
  .action(run(async () => (await import("./commands/ca.js")).caCommand()));

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
      // --help and --version exit 0; everything else commander rejects is a usage error (already printed).
      process.exitCode = err.exitCode === 0 ? EXIT.ok : EXIT.usage;
      if (err.exitCode !== 0 && jsonRequested(argv)) process.stdout.write(jsonError(err.message.replace(/^error: /, ""), "run `rdsd --help` for usage", "usage"));
      return;
    }
    const failure = err instanceof CliError ? err : new CliError((err as Error).message);
    process.stderr.write(`rdsd: ${failure.message}\n${failure.fix ? `  ${failure.fix}\n` : ""}`);
    // Scripts reading --json output get the failure in the same place, as JSON.
    if (wantsJson) process.stdout.write(jsonError(failure.message, failure.fix, failure.reason));
    process.exitCode = failure.code;
  }
}

/** --json among the command's own flags (not after `--`, where psql's arguments go). */
function jsonRequested(argv: string[]): boolean {
  const end = argv.indexOf("--");
  return (end < 0 ? argv : argv.slice(0, end)).includes("--json");
}

await main(process.argv);
