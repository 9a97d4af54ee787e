import { loadOrCreateLocalCa } from "@rdsd/certs";
import { stateDir } from "@rdsd/control";
import { runningDaemon } from "../daemon-client.js";
import { EXIT } from "../exit.js";

/**
 * `rdsd ca`: the local CA clients trust for verify-full. The running daemon's when one answers (it may
 * use another state dir: the demo's, a service's), else the one in this user's state dir, made on first use.
 */
export async function caCommand(): Promise<number> {
  const daemon = await runningDaemon();
  const path = daemon?.localCaPath || (await loadOrCreateLocalCa(stateDir())).caPath;
  process.stdout.write(path + "\n");
  return EXIT.ok;
}
