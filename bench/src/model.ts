import type { Endpoint } from "./pgbench.js";
import type { BenchDatabase, Pgbouncer, RdsdDaemon } from "./servers.js";

export type RunMode = "short" | "long";

/** How long and how often each measurement runs. */
export interface Plan {
  mode: RunMode;
  relaySeconds: number;
  /** Each relay/connect figure is the median of this many runs, paths interleaved. */
  repetitions: number;
  connectSeconds: number;
  bulkRows: number;
  bulkRepetitions: number;
  idleClients: number;
  statusRuns: number;
  pgbenchScale: number;
  /** Size of one transfer through an SSM tunnel (paced like the real agent, ~0.8 MB/s per session). */
  tunnelTransferMb: number;
  /** Sessions of the multi-session targets, and parallel transfers in the "several" case. */
  tunnelSessions: number;
  /** Before each measurement, wait at most this long for other work on the machine to calm down. */
  quietWaitMs: number;
  /** Before each pgbench -C run, wait at most this long for earlier TIME_WAIT sockets to expire (60 s on Linux). */
  timeWaitSettleMs: number;
  /** pgbench -S client counts and protocols of the relay section. */
  relayClients: number[];
  relayModes: Array<"simple" | "prepared">;
  /** How long the idle daemon with eager SSM targets is watched for CPU and wake-ups. */
  idleSeconds: number;
}

export const PLANS: Record<RunMode, Plan> = {
  short: { mode: "short", relaySeconds: 5, repetitions: 1, connectSeconds: 5, bulkRows: 1_000_000, bulkRepetitions: 1, idleClients: 1000, statusRuns: 5, pgbenchScale: 10, tunnelTransferMb: 2, tunnelSessions: 4, quietWaitMs: 5_000, timeWaitSettleMs: 20_000, relayClients: [1, 16, 64], relayModes: ["simple", "prepared"], idleSeconds: 60 },
  long: { mode: "long", relaySeconds: 20, repetitions: 3, connectSeconds: 15, bulkRows: 1_000_000, bulkRepetitions: 3, idleClients: 1000, statusRuns: 20, pgbenchScale: 10, tunnelTransferMb: 8, tunnelSessions: 4, quietWaitMs: 60_000, timeWaitSettleMs: 65_000, relayClients: [1, 16, 64], relayModes: ["simple", "prepared"], idleSeconds: 60 },
};

export type PathName = "direct" | "rdsd" | "pgbouncer";
export const PATHS: readonly PathName[] = ["direct", "rdsd", "pgbouncer"];

/** One line of the results table. Values absent for a path are left blank. */
export interface ResultRow {
  section: string;
  measure: string;
  unit: string;
  values: Partial<Record<PathName, number>>;
  /** "higher" when more is better (TPS, MB/s), "lower" for times and sizes; orients the ratios. */
  better: "higher" | "lower";
  goal?: string;
  /** Whether the goal holds on this run; undefined when the row has no goal or was not measured. */
  met?: boolean;
  note?: string;
}

export interface BenchContext {
  plan: Plan;
  binDir: string;
  workDir: string;
  /** The test CA standing in for the RDS bundle. */
  caPath: string;
  endpoints: Record<PathName, Endpoint>;
  db: BenchDatabase;
  rdsd: RdsdDaemon;
  pgbouncer: Pgbouncer;
  log(line: string): void;
  /** Waits for a quiet machine (bounded) before a measurement; records how busy it still was. */
  quiet(): Promise<void>;
}
