import { fileURLToPath } from "node:url";

/** The repository root, from bench/dist/<file>.js. */
export const REPO_ROOT = fileURLToPath(new URL("../../", import.meta.url));
export const RDSD_BIN = fileURLToPath(new URL("../../packages/cli/bin/rdsd.js", import.meta.url));
export const RESULTS_DIR = fileURLToPath(new URL("../results/", import.meta.url));
export const README = fileURLToPath(new URL("../../README.md", import.meta.url));
export const EMULATOR_BIN = fileURLToPath(new URL("../../packages/ssm-emulator/bin/rdsd-emulator.js", import.meta.url));
