import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { notifyReceiver, tempDir, type NotifyReceiver, type TempDir } from "@rdsd/testkit";
import { loadSdNotify } from "./sd-notify.js";

// The notification datagram, received on a real Unix datagram socket bound as systemd binds its own.
// Without the built addon these tests skip, saying why, unless RDSD_REQUIRE_NATIVE=1 (CI).
const loaded = loadSdNotify();
const runNative = loaded.ok || process.env.RDSD_REQUIRE_NATIVE === "1";
const skipNote = loaded.ok ? "" : ` (skipped: ${loaded.reason})`;

const open: Array<NotifyReceiver | TempDir> = [];
afterEach(async () => {
  for (const thing of open.splice(0)) await ("close" in thing ? thing.close() : thing.cleanup());
});

function send(address: string, message: string): void {
  if (!loaded.ok) throw new Error(loaded.reason);
  loaded.send(address, message);
}

describe.skipIf(!runNative)(`sd_notify addon${skipNote}`, () => {
  it("sends each message as one datagram to a socket path", async () => {
    const dir = await tempDir("rdsd-notify-");
    open.push(dir);
    const receiver = await notifyReceiver(join(dir.path, "notify"));
    open.push(receiver);
    send(receiver.address, "READY=1\nSTATUS=orders ready");
    send(receiver.address, "STOPPING=1");
    await receiver.next((d) => d === "STOPPING=1");
    expect(receiver.datagrams).toEqual(["READY=1\nSTATUS=orders ready", "STOPPING=1"]);
  });

  it("sends to an abstract name (@name, as systemd sets NOTIFY_SOCKET for some units)", async () => {
    const receiver = await notifyReceiver(`@rdsd-notify-test-${process.pid}-${Date.now()}`);
    open.push(receiver);
    send(receiver.address, "READY=1");
    expect((await receiver.next(() => true)).datagram).toBe("READY=1");
  });

  it("throws a clear error, and never crashes, when nobody listens or the address is bad", async () => {
    const dir = await tempDir("rdsd-notify-");
    open.push(dir);
    expect(() => send(join(dir.path, "nobody"), "READY=1")).toThrow(/sendto\(NOTIFY_SOCKET\): No such file or directory/);
    expect(() => send("relative/path", "READY=1")).toThrow(/absolute path or an abstract name/);
    expect(() => send("/" + "x".repeat(200), "READY=1")).toThrow(/fits a Unix socket address/);
  });
});
