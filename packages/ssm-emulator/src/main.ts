import { parseCommandLine, USAGE } from "./cli.js";
import { startEmulator } from "./emulator.js";

async function main(): Promise<number> {
  let parsed;
  try {
    parsed = parseCommandLine(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(`rdsd-emulator: ${(err as Error).message}\n${USAGE}\n`);
    return 2;
  }
  if (parsed.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const log = parsed.verbose ? (line: string) => process.stderr.write(`rdsd-emulator: ${line}\n`) : undefined;
  const emulator = await startEmulator({ ...parsed.options, ...(log ? { log } : {}) });
  // The contract with scripts: the first stdout line is this JSON object (the keys are fake, by design).
  const accounts = parsed.options.credentials?.map(({ account, accessKeyId, secretAccessKey }) => ({ account, accessKeyId, secretAccessKey }));
  process.stdout.write(`${JSON.stringify(accounts ? { ...emulator.clientConfig, accounts } : emulator.clientConfig)}\n`);
  await new Promise<void>((resolve) => {
    for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) process.once(signal, () => resolve());
  });
  await emulator.close();
  return 0;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`rdsd-emulator: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  },
);
