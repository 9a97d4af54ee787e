// `rdsd completion bash|zsh|fish`: shell scripts generated from the commander definitions, so every command
// and flag the CLI has is completed without a second list to keep. Target names are read when completing,
// by calling `rdsd __complete targets` (the config file, resolved as every other command resolves it).

import type { Command } from "commander";

export const SHELLS = ["bash", "zsh", "fish"] as const;
export type Shell = (typeof SHELLS)[number];

interface OptionSpec {
  /** "--json", "-n", "--lines". */
  names: string[];
  description: string;
  /** Takes a value (the next word). */
  value: boolean;
  /** The value is a file path. */
  file: boolean;
  choices: string[];
}

interface CommandSpec {
  name: string;
  description: string;
  options: OptionSpec[];
  /** What the first positional argument completes to: the config's target names, fixed choices, or nothing. */
  first: { kind: "targets" } | { kind: "choices"; choices: string[] } | { kind: "none" };
}

/** The visible commands and flags of the program, as completion needs them. */
export function completionSpec(program: Command): CommandSpec[] {
  return program.commands
    .filter((command) => !command.name().startsWith("__"))
    .map((command) => {
      const first = command.registeredArguments[0];
      return {
        name: command.name(),
        description: command.description(),
        options: [
          ...command.options
            .filter((o) => !o.hidden)
            .map((o) => ({
              names: [o.short, o.long].filter((n): n is string => Boolean(n)),
              description: o.description,
              value: o.required || o.optional,
              file: /<file>|\[file\]/.test(o.flags),
              choices: o.argChoices ?? [],
            })),
          { names: ["-h", "--help"], description: "help for this command", value: false, file: false, choices: [] },
        ],
        first: !first ? { kind: "none" } : first.name() === "target" ? { kind: "targets" } : first.argChoices ? { kind: "choices", choices: first.argChoices } : { kind: "none" },
      };
    });
}

export function completionScript(shell: Shell, program: Command): string {
  const spec = completionSpec(program);
  return { bash: bashScript, zsh: zshScript, fish: fishScript }[shell](spec);
}

const words = (list: string[]) => list.join(" ");
/** One `case` branch for shells (bash, zsh) whose patterns are joined by "|"; none when there is no pattern. */
const branch = (patterns: string[], body: string) => (patterns.length > 0 ? `${patterns.join("|")}) ${body} ;;` : "");
const valueOptions = (spec: CommandSpec[]) => [...new Set(spec.flatMap((c) => c.options.filter((o) => o.value).flatMap((o) => o.names)))];
const fileOptions = (spec: CommandSpec[]) => [...new Set(spec.flatMap((c) => c.options.filter((o) => o.file).flatMap((o) => o.names)))];
const choiceOptions = (spec: CommandSpec[]) => spec.flatMap((c) => c.options.filter((o) => o.choices.length > 0).map((o) => ({ command: c.name, option: o })));

function bashScript(spec: CommandSpec[]): string {
  const optionCases = spec.map((c) => `    ${c.name}) options="${words(c.options.flatMap((o) => o.names))}" ;;`).join("\n");
  const firstCases = spec
    .filter((c) => c.first.kind !== "none")
    .map((c) => `    ${c.name}) ${c.first.kind === "targets" ? 'candidates=$("${COMP_WORDS[0]}" __complete targets 2>/dev/null)' : `candidates="${words((c.first as { choices: string[] }).choices)}"`} ;;`)
    .join("\n");
  const choiceCases = choiceOptions(spec)
    .map(({ command, option }) => `    ${command}:${option.names.join("|" + command + ":")}) COMPREPLY=($(compgen -W "${words(option.choices)}" -- "$cur")); return ;;`)
    .join("\n");
  return `# rdsd completion for bash. Load it in this shell:   eval "$(rdsd completion bash)"
# or for every shell:   rdsd completion bash > ~/.local/share/bash-completion/completions/rdsd
_rdsd() {
  local cur=\${COMP_WORDS[COMP_CWORD]} prev=\${COMP_WORDS[COMP_CWORD-1]}
  local command="" positionals=0 i word
  # The command is the first word that is not a flag; positionals after it are counted, skipping flag values.
  for ((i = 1; i < COMP_CWORD; i++)); do
    word=\${COMP_WORDS[i]}
    case "$word" in
      ${branch(valueOptions(spec), "((i++))")}
      -*) ;;
      *) if [[ -z $command ]]; then command=$word; else ((positionals++)); fi ;;
    esac
  done
  if [[ -z $command ]]; then
    COMPREPLY=($(compgen -W "${words(spec.map((c) => c.name))} --help --version" -- "$cur"))
    return
  fi
${choiceCases ? `  case "$command:$prev" in\n${choiceCases}\n  esac\n` : ""}  case "$prev" in
    ${branch(fileOptions(spec), 'compopt -o filenames 2>/dev/null; COMPREPLY=($(compgen -f -- "$cur")); return')}
    ${branch(valueOptions(spec).filter((o) => !fileOptions(spec).includes(o)), "COMPREPLY=(); return")}
  esac
  local options="" candidates=""
  case "$command" in
${optionCases}
  esac
  if [[ $cur == -* ]]; then
    COMPREPLY=($(compgen -W "$options" -- "$cur"))
    return
  fi
  if ((positionals == 0)); then
    case "$command" in
${firstCases}
    esac
  fi
  COMPREPLY=($(compgen -W "$candidates" -- "$cur"))
}
complete -F _rdsd rdsd
`;
}

/** A word inside single quotes for zsh and fish. */
function quoted(text: string): string {
  return `'${text.replace(/'/g, "'\\''")}'`;
}

function zshScript(spec: CommandSpec[]): string {
  const describe = spec.map((c) => `    ${quoted(`${c.name}:${c.description.replace(/:/g, "\\:")}`)}`).join("\n");
  const optionCases = spec
    .map((c) => `    ${c.name}) options=(${c.options.flatMap((o) => o.names.map((n) => quoted(`${n}:${o.description.replace(/:/g, "\\:")}`))).join(" ")}) ;;`)
    .join("\n");
  const firstCases = spec
    .filter((c) => c.first.kind !== "none")
    .map((c) => `      ${c.name}) ${c.first.kind === "targets" ? 'compadd -- ${(f)"$(${words[1]} __complete targets 2>/dev/null)"}' : `compadd -- ${words((c.first as { choices: string[] }).choices)}`} ;;`)
    .join("\n");
  const choiceCases = choiceOptions(spec)
    .map(({ command, option }) => `    ${option.names.map((n) => `${command}:${n}`).join("|")}) compadd -- ${words(option.choices)}; return ;;`)
    .join("\n");
  return `#compdef rdsd
# rdsd completion for zsh. Load it (after compinit):   source <(rdsd completion zsh)
# or for every shell:   rdsd completion zsh > "\${fpath[1]}/_rdsd"
_rdsd() {
  local -a commands options
  commands=(
${describe}
  )
  local command="" word
  local -i positionals=0 i
  for (( i = 2; i < CURRENT; i++ )); do
    word=\${words[i]}
    case $word in
      ${branch(valueOptions(spec), "(( i++ ))")}
      -*) ;;
      *) if [[ -z $command ]]; then command=$word; else (( positionals++ )); fi ;;
    esac
  done
  if [[ -z $command ]]; then
    _describe -t commands 'rdsd command' commands
    return
  fi
${choiceCases ? `  case "$command:\${words[CURRENT-1]}" in\n${choiceCases}\n  esac\n` : ""}  case \${words[CURRENT-1]} in
    ${branch(fileOptions(spec), "_files; return")}
    ${branch(valueOptions(spec).filter((o) => !fileOptions(spec).includes(o)), "return")}
  esac
  case $command in
${optionCases}
  esac
  if [[ \${words[CURRENT]} == -* ]]; then
    _describe -t options 'option' options
    return
  fi
  if (( positionals == 0 )); then
    case $command in
${firstCases}
    esac
  fi
}
if (( $+functions[compdef] )); then
  compdef _rdsd rdsd
else
  print -u2 "rdsd completion: run compinit first (autoload -Uz compinit && compinit)"
fi
`;
}

function fishScript(spec: CommandSpec[]): string {
  const lines = [
    "# rdsd completion for fish. Load it in this shell:   rdsd completion fish | source",
    "# or for every shell:   rdsd completion fish > ~/.config/fish/completions/rdsd.fish",
    "function __rdsd_needs_target --description 'no positional argument after the rdsd command yet'",
    "    set -l tokens (commandline -opc)",
    "    set -l seen 0",
    "    set -l skip 0",
    "    for token in $tokens[2..-1]",
    "        if test $skip -eq 1",
    "            set skip 0",
    "            continue",
    "        end",
    `        switch $token`,
    `            case ${valueOptions(spec).map(quoted).join(" ") || "''"}`,
    "                set skip 1",
    "            case '-*'",
    "            case '*'",
    "                set seen (math $seen + 1)",
    "        end",
    "    end",
    "    test $seen -eq 1",
    "end",
    "function __rdsd_targets --description 'target names from the rdsd config'",
    "    set -l tokens (commandline -opc)",
    "    $tokens[1] __complete targets 2>/dev/null",
    "end",
    "complete -c rdsd -f",
    "complete -c rdsd -n __fish_use_subcommand -s h -l help -d 'show help'",
    "complete -c rdsd -n __fish_use_subcommand -s V -l version -d 'show the version'",
  ];
  for (const c of spec) {
    lines.push(`complete -c rdsd -n __fish_use_subcommand -a ${c.name} -d ${quoted(c.description)}`);
    const when = quoted(`__fish_seen_subcommand_from ${c.name}`);
    for (const o of c.options) {
      const short = o.names.find((n) => /^-[^-]$/.test(n));
      const long = o.names.find((n) => n.startsWith("--"));
      const flags = [short ? `-s ${short.slice(1)}` : "", long ? `-l ${long.slice(2)}` : ""].filter(Boolean).join(" ");
      const value = o.file ? " -r -F" : o.choices.length > 0 ? ` -x -a ${quoted(words(o.choices))}` : o.value ? " -x" : "";
      lines.push(`complete -c rdsd -n ${when} ${flags}${value} -d ${quoted(o.description)}`);
    }
    if (c.first.kind === "targets") lines.push(`complete -c rdsd -n ${quoted(`__fish_seen_subcommand_from ${c.name}; and __rdsd_needs_target`)} -a '(__rdsd_targets)'`);
    if (c.first.kind === "choices") lines.push(`complete -c rdsd -n ${quoted(`__fish_seen_subcommand_from ${c.name}; and __rdsd_needs_target`)} -a ${quoted(words(c.first.choices))}`);
  }
  return lines.join("\n") + "\n";
}
