import { chmod, mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { hasCommand, runCommand, tempDir, type TempDir } from "@rdsd/testkit";

// `rdsd completion SHELL` in real shells: bash's completion function driven through COMP_WORDS as bash's
// readline drives it, fish's own `complete -C`, zsh loading it under compinit. `rdsd` on PATH is a
// wrapper around this checkout's CLI, so the scripts call the real `rdsd __complete targets`.

const RDSD = fileURLToPath(new URL("../packages/cli/bin/rdsd.js", import.meta.url));
// CI installs zsh and fish (.ci/run): there these tests run, and fail if a shell is missing.
const inCi = process.env.CI === "true";

let dir: TempDir;
let env: NodeJS.ProcessEnv;

const target = (name: string, port: number) => `  ${name}:\n    host: ${name}.abc123xyz.eu-west-2.rds.amazonaws.com\n    listen: ${port}\n    user: app\n    tunnel: { driver: direct }\n`;

beforeAll(async () => {
  dir = await tempDir("rdsd-completion-");
  const bin = join(dir.path, "bin");
  await mkdir(bin);
  await writeFile(join(bin, "rdsd"), `#!/bin/sh\nexec "${process.execPath}" "${RDSD}" "$@"\n`);
  await chmod(join(bin, "rdsd"), 0o755);
  const home = join(dir.path, "home");
  await mkdir(join(home, ".config", "rdsd"), { recursive: true });
  await writeFile(join(home, ".config", "rdsd", "config.yaml"), `targets:\n${target("orders-dev", 6432)}${target("billing-dev", 6433)}${target("reports", 6434)}`);
  await writeFile(join(dir.path, "other.yaml"), `targets:\n${target("other-db", 7000)}`);
  await writeFile(join(dir.path, "my-config.yaml"), "");
  const { RDSD_CONFIG, XDG_CONFIG_HOME, ...inherited } = process.env;
  env = { ...inherited, HOME: home, PATH: `${bin}:${process.env.PATH}` };
});
afterAll(async () => dir?.cleanup());

function rdsd(args: string[], extra: NodeJS.ProcessEnv = {}) {
  return runCommand(process.execPath, [RDSD, ...args], { env: { ...env, ...extra }, cwd: dir.path });
}

/**
 * What bash offers for each line (the cursor at its end), through the completion function as readline calls
 * it: COMP_WORDS split at blanks, COMP_CWORD the last word, then _rdsd and its COMPREPLY. One bash for all.
 */
async function bashComplete(lines: string[], extra: NodeJS.ProcessEnv = {}): Promise<string[][]> {
  const script = join(dir.path, "rdsd.bash");
  await writeFile(script, (await rdsd(["completion", "bash"])).stdout);
  const driver = `
source "$SCRIPT"
while IFS= read -r LINE; do
  read -ra COMP_WORDS <<< "$LINE"
  [[ $LINE == *" " ]] && COMP_WORDS+=("")
  COMP_CWORD=$(( \${#COMP_WORDS[@]} - 1 ))
  COMP_LINE=$LINE
  COMP_POINT=\${#LINE}
  COMPREPLY=()
  _rdsd
  printf '%s\\n' "\${COMPREPLY[@]}" "--end--"
done
`;
  const result = await runCommand("bash", ["--norc", "--noprofile", "-c", driver], { env: { ...env, ...extra, SCRIPT: script }, cwd: dir.path, input: lines.join("\n") + "\n", timeoutMs: 60_000 });
  expect(result.stderr).toBe("");
  expect(result.code).toBe(0);
  const answers = result.stdout.split("--end--\n").slice(0, -1);
  expect(answers).toHaveLength(lines.length);
  return answers.map((answer) => answer.split("\n").filter(Boolean).sort());
}

describe("rdsd completion", () => {
  it("bash: completes commands, flags, flag values and the config's target names", { timeout: 120_000 }, async () => {
    const cases: Array<[string, string[]]> = [
      ["rdsd st", ["start", "status", "stop"]],
      ["rdsd status ", ["billing-dev", "orders-dev", "reports"]],
      ["rdsd test or", ["orders-dev"]],
      ["rdsd psql re", ["reports"]],
      // One target per command: psql's own arguments and a second word get no target names.
      ["rdsd status orders-dev ", []],
      ["rdsd psql orders-dev -- ", []],
      ["rdsd stop ", []],
      ["rdsd logs --", ["--follow", "--help", "--json", "--lines"]],
      ["rdsd logs -n ", []],
      ["rdsd install-service --", ["--config", "--help", "--print"]],
      ["rdsd daemon --config my-", ["my-config.yaml"]],
      ["rdsd completion ", ["bash", "fish", "zsh"]],
    ];
    expect(await bashComplete(cases.map(([line]) => line))).toEqual(cases.map(([, expected]) => expected));
    const [commands] = await bashComplete(["rdsd "]);
    expect(commands).toEqual(expect.arrayContaining(["install-service", "completion", "demo", "--help", "--version"]));
    expect(commands).not.toContain("__complete");
    // The same config resolution as every command: $RDSD_CONFIG wins over ~/.config/rdsd/config.yaml.
    expect(await bashComplete(["rdsd url "], { RDSD_CONFIG: join(dir.path, "other.yaml") })).toEqual([["other-db"]]);
  });

  it("__complete targets prints the target names, and fails like other commands on a bad config", async () => {
    const listed = await rdsd(["__complete", "targets"]);
    expect(listed.code).toBe(0);
    expect(listed.stdout).toBe("orders-dev\nbilling-dev\nreports\n");
    const bad = join(dir.path, "bad.yaml");
    await writeFile(bad, "targets:\n  x:\n    listen: abc\n");
    const refused = await rdsd(["__complete", "targets"], { RDSD_CONFIG: bad });
    expect(refused.code).toBe(1);
    expect(refused.stdout).toBe("");
    expect(refused.stderr).toContain(bad);
    expect((await rdsd(["completion", "tcsh"])).code).toBe(2);
    expect((await rdsd(["--help"])).stdout).not.toContain("__complete");
  });

  it.skipIf(!hasCommand("fish") && !inCi)("fish: the script loads and completes commands, flags and target names", { timeout: 120_000 }, async () => {
    const complete = async (line: string) => {
      const result = await runCommand("fish", ["--no-config", "-c", `rdsd completion fish | source; complete -C ${JSON.stringify(line)}`], { env, cwd: dir.path });
      expect(result.stderr).toBe("");
      return result.stdout.split("\n").filter(Boolean).map((l) => l.split("\t")[0]!).sort();
    };
    expect((await runCommand("fish", ["--no-execute", "-c", (await rdsd(["completion", "fish"])).stdout])).code).toBe(0);
    expect(await complete("rdsd st")).toEqual(["start", "status", "stop"]);
    expect(await complete("rdsd status ")).toEqual(["billing-dev", "orders-dev", "reports"]);
    expect(await complete("rdsd status orders-dev ")).toEqual([]);
    expect(await complete("rdsd logs --")).toEqual(["--follow", "--help", "--json", "--lines"]);
    expect(await complete("rdsd completion ")).toEqual(["bash", "fish", "zsh"]);
  });

  it.skipIf(!hasCommand("zsh") && !inCi)("zsh: the script parses and registers itself with compinit", { timeout: 60_000 }, async () => {
    const script = (await rdsd(["completion", "zsh"])).stdout;
    expect((await runCommand("zsh", ["-n"], { input: script })).code).toBe(0);
    const loaded = await runCommand("zsh", ["-f", "-c", `autoload -Uz compinit && compinit -u -D; source <(rdsd completion zsh); print -r -- $_comps[rdsd]`], { env, cwd: dir.path });
    expect(loaded.stderr).toBe("");
    expect(loaded.stdout.trim()).toBe("_rdsd");
  });
});
