// Unix-socket listeners in the states rdsd must tell apart before it replaces a socket file: real processes.

import { spawn } from "node:child_process";
import { once } from "node:events";
import net from "node:net";

/** A child that runs `script` with `path` as argv[1]; resolves once it prints its first line. */
async function listenerChild(path: string, script: string) {
  const child = spawn(process.execPath, ["-e", script, path], { stdio: ["ignore", "pipe", "inherit"] });
  await once(child.stdout!, "data");
  return child;
}

/** A process listens on `path` and is killed with SIGKILL: its socket file stays, nobody listens (ECONNREFUSED). */
export async function crashedUnixListener(path: string): Promise<void> {
  const child = await listenerChild(path, `require("node:net").createServer().listen(process.argv[1], () => console.log("up"))`);
  child.kill("SIGKILL");
  await once(child, "exit");
}

export interface FullBacklogUnixListener {
  /** How each filling connect ended: "connect" while the backlog had room, then the error code ("EAGAIN"). */
  outcomes: string[];
  /** Kills the listener and closes the queued connections. */
  close(): Promise<void>;
}

/**
 * A live listener that never accepts: a child listens with backlog 1 and blocks its event loop for good, and
 * this process connects until the kernel refuses a connect (EAGAIN, at most 64 tries). A further connect to
 * `path` then meets a full accept backlog.
 */
export async function fullBacklogUnixListener(path: string): Promise<FullBacklogUnixListener> {
  const child = await listenerChild(
    path,
    `require("node:net").createServer().listen({ path: process.argv[1], backlog: 1 }, () => { console.log("up"); Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0); })`,
  );
  const queued: net.Socket[] = [];
  const outcomes: string[] = [];
  while (outcomes.length < 64 && outcomes.at(-1) !== "EAGAIN") {
    const socket = net.connect(path);
    queued.push(socket);
    outcomes.push(
      await new Promise<string>((resolve) => {
        socket.once("connect", () => resolve("connect"));
        socket.once("error", (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
      }),
    );
  }
  return {
    outcomes,
    close: async () => {
      for (const socket of queued) socket.destroy();
      child.kill("SIGKILL");
      if (child.exitCode === null && child.signalCode === null) await once(child, "exit");
    },
  };
}
