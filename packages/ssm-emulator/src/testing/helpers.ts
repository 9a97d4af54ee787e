import { ResumeSessionCommand, SSMClient, StartSessionCommand } from "@aws-sdk/client-ssm";
import { freePort } from "@rdsd/testkit";
import type { Emulator } from "../emulator.js";
import { TestDataChannelClient } from "./data-channel-client.js";
import type { TestClientOptions } from "./data-channel-client.js";

export const RDS_HOST = "orders-dev.abc123xyz.eu-west-2.rds.amazonaws.com";

export function sdkClient(emulator: Emulator): SSMClient {
  return new SSMClient({
    endpoint: emulator.endpoint,
    region: emulator.region,
    credentials: emulator.credentials,
    maxAttempts: 1,
  });
}

export async function startSession(
  emulator: Emulator,
  opts: { instanceId?: string; host?: string; port?: string } = {},
): Promise<{ sessionId: string; token: string; streamUrl: string }> {
  const out = await sdkClient(emulator).send(
    new StartSessionCommand({
      Target: opts.instanceId ?? emulator.instances()[0]!.instanceId,
      DocumentName: "AWS-StartPortForwardingSessionToRemoteHost",
      Parameters: { host: [opts.host ?? RDS_HOST], portNumber: [opts.port ?? "5432"], localPortNumber: ["0"] },
    }),
  );
  return { sessionId: out.SessionId!, token: out.TokenValue!, streamUrl: out.StreamUrl! };
}

export async function resumeToken(emulator: Emulator, sessionId: string): Promise<string | undefined> {
  const out = await sdkClient(emulator).send(new ResumeSessionCommand({ SessionId: sessionId }));
  return out.TokenValue;
}

/** Starts a session and a test client through the handshake. */
export async function connectedClient(
  emulator: Emulator,
  clientOptions: Partial<TestClientOptions> = {},
  sessionOptions: { instanceId?: string; host?: string; port?: string } = {},
): Promise<{ client: TestDataChannelClient; sessionId: string }> {
  const session = await startSession(emulator, sessionOptions);
  const client = await TestDataChannelClient.connect({ streamUrl: session.streamUrl, token: session.token, ...clientOptions });
  await client.handshakeComplete;
  return { client, sessionId: session.sessionId };
}

/** A port on loopback where nothing listens (it was free a moment ago). */
export const closedPort = (): Promise<number> => freePort();

/** Collects single-connection Output until n bytes arrived. */
export function collectOutput(client: TestDataChannelClient, n: number): Promise<Buffer> {
  const parts: Buffer[] = [];
  let got = 0;
  return new Promise((resolve) => {
    const onOutput = (chunk: Buffer) => {
      parts.push(chunk);
      got += chunk.length;
      if (got >= n) {
        client.off("output", onOutput);
        resolve(Buffer.concat(parts));
      }
    };
    client.on("output", onOutput);
  });
}
