import { randomUUID } from "node:crypto";
import { createServer } from "node:http";
import type { IncomingMessage, Server, ServerResponse } from "node:http";
import type { Duplex } from "node:stream";
import { WebSocketServer } from "ws";
import type { WebSocket } from "ws";
import { decodeOpenDataChannel } from "@rdsd/ssm-protocol";
import { AwsError, awsErrors, errorBody } from "./aws-errors.js";
import { isLoopback } from "./destinations.js";
import type { KnownCredential } from "./sigv4.js";
import { verifySigV4 } from "./sigv4.js";
import type { SsmService } from "./ssm-service.js";

const MAX_BODY = 1 << 20;
const OPEN_DATA_CHANNEL_TIMEOUT_MS = 10_000;
const DATA_CHANNEL_PATH = /^\/v1\/data-channel\/([A-Za-z0-9._-]{1,96})$/;

export interface HttpServerOptions {
  service: SsmService;
  region: string;
  credentials: readonly KnownCredential[];
  /** The account of keys that name none. */
  defaultAccount: string;
  /** Handles /_admin/* requests; returns the JSON answer or throws AdminError. */
  admin(method: string, path: string, query: URLSearchParams, body: unknown): unknown;
  log(line: string): void;
}

export class AdminError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

export interface EmulatorServer {
  server: Server;
  /** Ends every websocket at once (including ones still waiting for OpenDataChannel or a held upgrade). */
  terminateWebSockets(): void;
}

/** One HTTP server for the SSM API (JSON 1.1), the data-channel websockets and the admin API. */
export function createEmulatorServer(options: HttpServerOptions): EmulatorServer {
  const wss = new WebSocketServer({ noServer: true, maxPayload: 16 << 20 });
  /** Upgrades held by the channelAcceptDelayMs fault. */
  const held = new Set<Duplex>();
  const server = createServer((req, res) => {
    if (!isLoopback(stripV4Mapped(req.socket.remoteAddress ?? ""))) {
      res.writeHead(403).end();
      return;
    }
    void handleHttp(options, req, res).catch((err: unknown) => {
      options.log(`internal error: ${String(err)}`);
      if (!res.headersSent) send(res, 500, { __type: "InternalServerError", Message: "internal error" });
    });
  });
  server.on("upgrade", (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    const url = new URL(req.url ?? "/", "http://localhost");
    const match = DATA_CHANNEL_PATH.exec(url.pathname);
    if (!match || !isLoopback(stripV4Mapped(req.socket.remoteAddress ?? ""))) {
      socket.end("HTTP/1.1 404 Not Found\r\nConnection: close\r\n\r\n");
      return;
    }
    const sessionId = match[1]!;
    const upgrade = () => wss.handleUpgrade(req, socket, head, (ws) => acceptDataChannel(options, ws, sessionId));
    const delayMs = options.service.getSession(sessionId)?.channelAcceptDelayMs ?? 0;
    if (delayMs === 0) {
      upgrade();
      return;
    }
    options.log(`data channel for ${sessionId}: upgrade held for ${delayMs} ms (fault)`);
    held.add(socket);
    const timer = setTimeout(() => {
      held.delete(socket);
      upgrade(); // synchronous: the websocket's reader is attached before any data can flow past it
    }, delayMs);
    // Read while held (a client sends nothing before the answer), so a client that gives up is noticed and not answered.
    socket.resume();
    socket.once("close", () => {
      held.delete(socket);
      clearTimeout(timer);
    });
  });
  const terminateWebSockets = () => {
    for (const ws of wss.clients) ws.terminate();
    for (const socket of held) socket.destroy();
  };
  server.on("close", () => {
    terminateWebSockets();
    wss.close();
  });
  return { server, terminateWebSockets };
}

function stripV4Mapped(address: string): string {
  return address.startsWith("::ffff:") ? address.slice(7) : address;
}

/** The first frame must be the OpenDataChannel text frame with the session's current token. */
function acceptDataChannel(options: HttpServerOptions, ws: WebSocket, sessionId: string): void {
  const timer = setTimeout(() => ws.close(1008, "OpenDataChannel not received"), OPEN_DATA_CHANNEL_TIMEOUT_MS);
  ws.on("error", () => {});
  ws.once("message", (data: Buffer, isBinary: boolean) => {
    clearTimeout(timer);
    if (isBinary) {
      ws.close(1008, "the first frame must be OpenDataChannel text");
      return;
    }
    let open;
    try {
      open = decodeOpenDataChannel(data.toString("utf8"));
    } catch (err) {
      ws.close(1008, (err as Error).message.slice(0, 120));
      return;
    }
    const session = options.service.getSession(sessionId);
    if (!session || !session.tokenMatches(open.TokenValue)) {
      options.log(`data channel for ${sessionId}: refused (unknown session or bad token)`);
      ws.close(1008, "authentication failed");
      return;
    }
    const refusal = session.attach(ws, open);
    if (refusal) ws.close(1008, refusal);
  });
}

async function readBody(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY) throw new AwsError("SerializationException", "request body too large", 413, "message");
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}

function send(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    "content-type": "application/x-amz-json-1.1",
    "content-length": Buffer.byteLength(text),
    "x-amzn-requestid": randomUUID(),
    ...headers,
  });
  res.end(text);
}

function sendError(res: ServerResponse, err: AwsError): void {
  const { status, headers, body } = errorBody(err);
  res.writeHead(status, { ...headers, "content-length": Buffer.byteLength(body), "x-amzn-requestid": randomUUID() });
  res.end(body);
}

async function handleHttp(options: HttpServerOptions, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const url = new URL(req.url ?? "/", "http://localhost");
  if (url.pathname.startsWith("/_admin/")) {
    await handleAdmin(options, req, res, url);
    return;
  }
  let body: Buffer;
  try {
    body = await readBody(req);
  } catch (err) {
    sendError(res, err instanceof AwsError ? err : awsErrors.serialization("unreadable body"));
    return;
  }
  const target = req.headers["x-amz-target"];
  try {
    if (req.method !== "POST" || typeof target !== "string") throw awsErrors.unknownOperation();
    const credential = await verifySigV4(
      { method: req.method, path: req.url ?? "/", headers: req.headers, body },
      options.credentials,
      { region: options.region, service: "ssm" },
    );
    const operation = target.startsWith("AmazonSSM.") ? target.slice("AmazonSSM.".length) : "";
    let input: Record<string, unknown>;
    try {
      const parsed: unknown = body.length === 0 ? {} : JSON.parse(body.toString("utf8"));
      if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) throw new Error("not an object");
      input = parsed as Record<string, unknown>;
    } catch {
      throw awsErrors.serialization("Start of structure or map found where not expected.");
    }
    if (credential.deniedOperations?.includes(operation)) {
      const account = credential.account ?? options.defaultAccount;
      const resource = typeof input["Target"] === "string" ? `arn:aws:ec2:${options.region}:${account}:instance/${input["Target"]}` : "*";
      throw awsErrors.accessDenied(operation, resource, account);
    }
    const service = options.service;
    const caller = { account: credential.account ?? options.defaultAccount, accessKeyId: credential.accessKeyId };
    if (operation === "StartSession") {
      const delayMs = service.startSessionDelayMs(input["Target"]);
      if (delayMs > 0) {
        options.log(`StartSession on ${String(input["Target"])}: held for ${delayMs} ms (fault)`);
        // A caller that gave up meanwhile gets nothing, and no session is started for it.
        if (!(await answerAfter(delayMs, res))) {
          options.log(`StartSession on ${String(input["Target"])}: the caller gave up; no session started`);
          return;
        }
      }
    }
    let output: unknown;
    switch (operation) {
      case "StartSession":
        output = service.startSession(input, caller);
        break;
      case "ResumeSession":
        output = service.resumeSession(input, caller);
        break;
      case "TerminateSession":
        output = service.terminateSession(input, caller);
        break;
      case "DescribeInstanceInformation":
        output = service.describeInstanceInformation(input, caller);
        break;
      default:
        throw awsErrors.unknownOperation();
    }
    send(res, 200, output);
  } catch (err) {
    if (err instanceof AwsError) sendError(res, err);
    else throw err;
  }
}

/** Resolves true after `ms`, or false as soon as the response's connection closes (the caller gave up). */
function answerAfter(ms: number, res: ServerResponse): Promise<boolean> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      res.off("close", onClose);
      resolve(true);
    }, ms);
    const onClose = () => {
      clearTimeout(timer);
      resolve(false);
    };
    res.once("close", onClose);
  });
}

async function handleAdmin(options: HttpServerOptions, req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
  try {
    const raw = await readBody(req);
    let body: unknown = undefined;
    if (raw.length > 0) {
      try {
        body = JSON.parse(raw.toString("utf8"));
      } catch {
        throw new AdminError(400, "body must be JSON");
      }
    }
    const answer = options.admin(req.method ?? "GET", url.pathname.slice("/_admin".length), url.searchParams, body);
    sendJson(res, 200, answer ?? { ok: true });
  } catch (err) {
    if (err instanceof AdminError) sendJson(res, err.status, { error: err.message });
    else if (err instanceof AwsError) sendJson(res, 400, { error: err.message });
    else sendJson(res, 400, { error: (err as Error).message });
  }
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text) });
  res.end(text);
}
