import { spawn } from "node:child_process";
import { createInterface } from "node:readline";

/** What systemd's side of $NOTIFY_SOCKET received, one datagram per entry, in order. */
export interface NotifyReceiver {
  /** For NOTIFY_SOCKET: the path, or "@name" for an abstract name. */
  address: string;
  datagrams: string[];
  /** The first datagram (from `from` on) that `match` accepts, waiting for it when it has not come yet. */
  next(match: (datagram: string) => boolean, from?: number): Promise<{ datagram: string; index: number }>;
  close(): Promise<void>;
}

// A Unix datagram socket bound as systemd binds its notification socket, by a python3 child (Node has no
// Unix datagram sockets). Each datagram is printed as one JSON string line.
const RECEIVER = `
import json, socket, sys
address = sys.argv[1]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind("\\0" + address[1:] if address.startswith("@") else address)
print(json.dumps("bound"), flush=True)
while True:
    print(json.dumps(s.recv(65536).decode("utf-8", "replace")), flush=True)
`;

/** Binds a receiver at `address` (a path, or "@name" for the abstract namespace) and resolves once it is bound. */
export async function notifyReceiver(address: string): Promise<NotifyReceiver> {
  const child = spawn("python3", ["-c", RECEIVER, address], { stdio: ["ignore", "pipe", "pipe"] });
  const datagrams: string[] = [];
  const waiters = new Set<() => void>();
  let stderr = "";
  child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
  const bound = new Promise<void>((resolve, reject) => {
    child.once("error", reject);
    child.once("exit", (code) => reject(new Error(`the notify receiver exited with ${code}: ${stderr}`)));
    const lines = createInterface({ input: child.stdout });
    let first = true;
    lines.on("line", (line) => {
      if (first) {
        first = false;
        resolve();
        return;
      }
      datagrams.push(JSON.parse(line) as string);
      for (const wake of waiters) wake();
    });
  });
  await bound;
  return {
    address,
    datagrams,
    next(match, from = 0) {
      return new Promise((resolve) => {
        const check = () => {
          const index = datagrams.findIndex((d, i) => i >= from && match(d));
          if (index === -1) return;
          waiters.delete(check);
          resolve({ datagram: datagrams[index]!, index });
        };
        waiters.add(check);
        check();
      });
    },
    async close() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((resolve) => child.once("exit", resolve));
      child.kill("SIGTERM");
      await exited;
    },
  };
}
