import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { once } from "node:events";
import { existsSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import { connect, createServer } from "node:net";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import {
  childrenOf,
  echoServer,
  freePort,
  makeRdsLikeTls,
  pgClientEnv,
  postgresBinDir,
  readBytes,
  readHashed,
  runCommand,
  seededBytes,
  tcpServer,
  tempDir,
} from "./index.js";

describe("runCommand", () => {
  it("feeds stdin and collects stdout, stderr and the exit code", async () => {
    const result = await runCommand("sh", ["-c", "cat; echo oops >&2; exit 3"], { input: "hello\n" });
    expect(result).toEqual({ code: 3, signal: null, stdout: "hello\n", stderr: "oops\n", timedOut: false });
  });

  it("kills a command that runs past its timeout", async () => {
    const started = Date.now();
    const result = await runCommand("sleep", ["30"], { timeoutMs: 100 });
    expect(result).toMatchObject({ code: null, signal: "SIGKILL", timedOut: true });
    expect(Date.now() - started).toBeLessThan(5_000);
  });

  it("rejects clearly when the program does not exist", async () => {
    await expect(runCommand("no-such-program-rdsd", [])).rejects.toThrow(/cannot run no-such-program-rdsd: .*ENOENT/);
  });
});

describe("pgClientEnv", () => {
  it("puts the PostgreSQL client programs first on PATH and drops inherited PG* settings", async () => {
    process.env.PGHOST = "somewhere.invalid";
    try {
      const env = pgClientEnv({ PGCONNECT_TIMEOUT: "3" });
      expect(env.PATH?.split(":")[0]).toBe(postgresBinDir());
      expect(env.PGHOST).toBeUndefined();
      expect(env.PGCONNECT_TIMEOUT).toBe("3");
      const psql = await runCommand("sh", ["-c", "command -v psql"], { env });
      expect(psql.stdout.trim()).toBe(join(postgresBinDir(), "psql"));
    } finally {
      delete process.env.PGHOST;
    }
  });
});

describe("tempDir and freePort", () => {
  it("creates a directory that cleanup() removes with its contents", async () => {
    const dir = await tempDir("rdsd-testkit-");
    await writeFile(join(dir.path, "file"), "x");
    expect(existsSync(dir.path)).toBe(true);
    await dir.cleanup();
    expect(existsSync(dir.path)).toBe(false);
    await dir.cleanup(); // idempotent
  });

  it("returns a port that can be listened on", async () => {
    const port = await freePort();
    const server = createServer();
    await new Promise<void>((resolve, reject) => server.once("error", reject).listen(port, "127.0.0.1", resolve));
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
});

describe("makeRdsLikeTls", () => {
  it("issues a certificate for the RDS host name that OpenSSL verifies against the CA file", async () => {
    const host = "orders-dev.abc123xyz.eu-west-2.rds.amazonaws.com";
    const tls = await makeRdsLikeTls(host);
    const dir = await tempDir();
    try {
      const certPath = join(dir.path, "server.pem");
      await writeFile(certPath, tls.certPem);
      const verify = (name: string) => runCommand("openssl", ["verify", "-CAfile", tls.caPath, "-verify_hostname", name, certPath]);
      expect((await verify(host)).code).toBe(0);
      expect((await verify("other.abc123xyz.eu-west-2.rds.amazonaws.com")).code).not.toBe(0);
      expect(tls.ca.certPem).toBe(tls.caPem);
    } finally {
      await dir.cleanup();
      await tls.cleanup();
    }
    expect(existsSync(tls.caPath)).toBe(false);
  });
});

describe("tcpServer, echoServer, readBytes, readHashed", () => {
  it("echoes over a real socket, counts connections and destroys them on close", async () => {
    const echo = await echoServer();
    const socket = connect(echo.port, "127.0.0.1");
    await once(socket, "connect");
    const back = readBytes(socket, 5);
    socket.write("hello");
    expect((await back).toString()).toBe("hello");
    expect(echo.connections).toHaveLength(1);
    const closed = once(socket, "close");
    await echo.close();
    await closed;
  });

  it("hashes what it reads, keeps the bytes only up to a limit, and rejects on an early end", async () => {
    const data = seededBytes(3000, 5);
    const server = await tcpServer((s) => s.end(data));
    try {
      const read = async (n: number, keepUpTo?: number) => {
        const socket = connect(server.port, "127.0.0.1");
        try {
          return await readHashed(socket, n, keepUpTo);
        } finally {
          socket.destroy();
        }
      };
      const sha256 = createHash("sha256").update(data).digest("hex");
      expect(await read(3000)).toEqual({ hash: sha256, bytes: data });
      expect(await read(3000, 100)).toEqual({ hash: sha256, bytes: undefined });
      await expect(read(3001)).rejects.toThrow("stream ended after 3000 of 3001 bytes");
      const socket = connect(server.port, "127.0.0.1");
      await expect(readBytes(socket, 4000)).rejects.toThrow("stream ended after 3000 of 4000 bytes");
    } finally {
      await server.close();
    }
  });
});

describe("seededBytes", () => {
  it("gives the same bytes for the same seed, other bytes for another seed, at any length", () => {
    expect(seededBytes(4099, 7)).toEqual(seededBytes(4099, 7));
    expect(seededBytes(4099, 7).subarray(0, 13)).toEqual(seededBytes(13, 7));
    expect(seededBytes(64, 7).equals(seededBytes(64, 8))).toBe(false);
    expect(seededBytes(0)).toHaveLength(0);
    // Not a constant fill: the 256 byte values all show up in 64 KB.
    expect(new Set(seededBytes(65536, 1)).size).toBe(256);
  });
});

describe("childrenOf", () => {
  it("finds a process this one started, and not after it has gone", async () => {
    const child = spawn("sleep", ["30"], { stdio: "ignore" });
    try {
      await once(child, "spawn");
      expect(await childrenOf(process.pid)).toContain(child.pid);
    } finally {
      child.kill("SIGKILL");
    }
    await once(child, "exit");
    expect(await childrenOf(process.pid)).not.toContain(child.pid);
  });
});
