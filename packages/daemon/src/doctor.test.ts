import { mkdtemp, rm } from "node:fs/promises";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { sockDiagOwnerLookup } from "@rdsd/proxy";
import { crashedUnixListener } from "@rdsd/testkit";
import { localUserCheck, socketChecks, socketPeerCheck } from "./doctor.js";

describe("doctor's local-user check", () => {
  it("says the kernel's exact lookup is in use when the sock_diag addon works", () => {
    const check = localUserCheck([{}], "linux", () => ({ ok: true, owner: () => undefined }));
    expect(check).toMatchObject({ name: "local-user check", status: "ok", detail: expect.stringContaining("netlink sock_diag") });
  });

  it("warns, with the reason and the fix, when connections are checked through /proc/net/tcp", () => {
    const check = localUserCheck([{ allowOtherUsers: true }, {}], "linux", () => ({ ok: false, reason: "the native addon is not built" }));
    expect(check).toMatchObject({ status: "warn", detail: expect.stringMatching(/\/proc\/net\/tcp.*: the native addon is not built$/), fix: expect.stringContaining("npm run build:addon -w @rdsd/sock-diag") });
  });

  it("skips when no target checks local users, or off Linux, without loading the addon", () => {
    const never = () => {
      throw new Error("the lookup must not be asked");
    };
    expect(localUserCheck([{ allowOtherUsers: true }], "linux", never).status).toBe("skip");
    expect(localUserCheck([{}], "darwin", never)).toMatchObject({ status: "skip", detail: expect.stringContaining("Linux only") });
  });

  it.runIf(process.platform === "linux")("reports this machine's real state", () => {
    const exact = sockDiagOwnerLookup();
    expect(localUserCheck([{}], "linux", sockDiagOwnerLookup).status).toBe(exact.ok ? "ok" : "warn");
  });
});

describe("doctor: the Unix-socket peer check", () => {
  const socket = { path: "/run/rdsd/sockets/a/.s.PGSQL.6432" };
  it("is left out without a guarded socket target", () => {
    expect(socketPeerCheck([{}], "linux", () => ({ ok: true }))).toBeUndefined();
    expect(socketPeerCheck([{ socket, allowOtherUsers: true }], "linux", () => ({ ok: true }))).toBeUndefined();
  });

  it("is ok with the peer credentials readable, and says the permissions alone guard the socket otherwise (warn on Linux with the fix)", () => {
    expect(socketPeerCheck([{ socket }], "linux", () => ({ ok: true }))).toMatchObject({ status: "ok", detail: expect.stringContaining("SO_PEERCRED") });
    const missing = socketPeerCheck([{ socket }], "linux", () => ({ ok: false, reason: "the native addon is not built" }))!;
    expect(missing).toMatchObject({ status: "warn", detail: expect.stringContaining("permissions only"), fix: expect.stringContaining("build:addon") });
    expect(socketPeerCheck([{ socket }], "darwin", () => ({ ok: false, reason: "Linux only" }))).toMatchObject({ status: "skip" });
  });
});

describe("doctor: each target's Unix socket", () => {
  it("fails when another program listens on the path, and calls a socket file left by a killed process stale", async () => {
    const directory = await mkdtemp(join(tmpdir(), "rdsd-doctor-"));
    const socketAt = (port: number) => ({ directory, port, path: join(directory, `.s.PGSQL.${port}`), managed: false });
    const live = { name: "live", socket: socketAt(6432) };
    const stale = { name: "stale", socket: socketAt(6433) };
    const other = net.createServer((socket) => socket.on("error", () => {}).end());
    try {
      await new Promise<void>((resolve) => other.listen(live.socket.path, resolve));
      await crashedUnixListener(stale.socket.path);

      const checks = await socketChecks([live, stale], undefined);
      expect(checks).toEqual([
        { name: `socket live ${live.socket.path}`, status: "fail", detail: "another program listens on it", fix: "stop it, or choose another directory for targets.live.socket" },
        { name: `socket stale ${stale.socket.path}`, status: "ok", detail: expect.stringContaining("stale socket"), fix: null },
      ]);
    } finally {
      await new Promise((resolve) => other.close(resolve));
      await rm(directory, { recursive: true, force: true });
    }
  });
});
