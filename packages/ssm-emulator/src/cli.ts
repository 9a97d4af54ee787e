import { parseArgs } from "node:util";
import { parseMapping } from "./destinations.js";
import type { EmulatorOptions } from "./emulator.js";
import type { KnownCredential } from "./sigv4.js";
import { parseInstanceArg } from "./instances.js";

export const USAGE = `usage: rdsd-emulator [options]

A local stand-in for the AWS side of Session Manager port forwarding (loopback only).
Its first line on stdout is one JSON object: {"endpoint","region","accessKeyId","secretAccessKey"}.

  --port N                 listen port (default 0: any free port)
  --host ADDR              loopback address to listen on (default 127.0.0.1)
  --map HOST=ADDR:PORT     the agent dials ADDR:PORT for HOST (repeatable; HOST:PORT=... maps one port)
  --instance ID[,tag:K=V][,account:A]  a managed instance, with optional tags and owning account (repeatable;
                           default i-0e1d2c3b4a5968778)
  --account A              an AWS account (12 digits) with its own fake key (repeatable): each sees only its own
                           instances and sessions; the first line then also lists "accounts" with their keys
  --agent-version V        the agent version instances report (default 3.3.1802.0; 3.0.196.0 or older: single-connection mode)
  --no-pacing              drop the real agent's 1024-byte / 1 ms pacing (for speed)
  --region R               region the API signs for (default eu-west-2)
  --handshake-timeout-ms N how long the agent waits for the handshake (default 15000)
  --verbose                diagnostic lines on stderr
  --help                   this text`;

/** Parses the command line into emulator options; throws with a clear message on bad input. */
export function parseCommandLine(argv: string[]): { options: EmulatorOptions; help: boolean; verbose: boolean } {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    allowPositionals: false,
    options: {
      port: { type: "string" },
      host: { type: "string" },
      map: { type: "string", multiple: true },
      instance: { type: "string", multiple: true },
      account: { type: "string", multiple: true },
      "agent-version": { type: "string" },
      "no-pacing": { type: "boolean" },
      region: { type: "string" },
      "handshake-timeout-ms": { type: "string" },
      verbose: { type: "boolean" },
      help: { type: "boolean" },
    },
  });
  const options: EmulatorOptions = {};
  if (values.port !== undefined) {
    const port = Number(values.port);
    if (!/^\d+$/.test(values.port) || port > 65535) throw new Error(`--port wants 0-65535, got ${JSON.stringify(values.port)}`);
    options.port = port;
  }
  if (values.host !== undefined) options.host = values.host;
  if (values.map) options.hostMap = values.map.map(parseMapping);
  if (values.instance) options.instances = values.instance.map(parseInstanceArg);
  if (values.account) {
    for (const account of values.account) if (!/^\d{12}$/.test(account)) throw new Error(`--account wants a 12-digit account id, got ${JSON.stringify(account)}`);
    options.credentials = [...new Set(values.account)].map(accountCredential);
  }
  if (values["agent-version"] !== undefined) {
    if (!/^\d+\.\d+\.\d+\.\d+$/.test(values["agent-version"])) throw new Error("--agent-version wants a.b.c.d");
    options.agentVersion = values["agent-version"];
  }
  if (values["no-pacing"]) options.pacing = false;
  if (values.region !== undefined) {
    if (!/^[a-z]{2}(-[a-z]+)+-\d$/.test(values.region)) throw new Error(`--region wants a region name like eu-west-2`);
    options.region = values.region;
  }
  if (values["handshake-timeout-ms"] !== undefined) {
    const ms = Number(values["handshake-timeout-ms"]);
    if (!Number.isInteger(ms) || ms < 1) throw new Error("--handshake-timeout-ms wants a positive integer");
    options.handshakeTimeoutMs = ms;
  }
  return { options, help: values.help === true, verbose: values.verbose === true };
}

/** The fake key of an account given with --account (never a real key's shape). */
export function accountCredential(account: string): KnownCredential {
  return { accessKeyId: `AKIDEMULATOR${account.slice(-8)}`, secretAccessKey: `emulator-secret-not-a-real-aws-secret-${account}`, account };
}
