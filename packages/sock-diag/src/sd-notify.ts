// systemd's notification socket ($NOTIFY_SOCKET): Node has no Unix datagram sockets, so the send is native.

import { fileURLToPath } from "node:url";
import { requireAddon } from "./addon.js";

/** The function of build/Release/sd_notify.node (native/sd_notify.c). */
interface SdNotifyAddon {
  notify(address: string, message: string): void;
}

export const SD_NOTIFY_ADDON_PATH = fileURLToPath(new URL("../build/Release/sd_notify.node", import.meta.url));

/** Sends one notification ("READY=1\nSTATUS=..."); throws with the errno text when it cannot. */
export type SdNotifySend = (address: string, message: string) => void;

let loaded: { ok: true; send: SdNotifySend } | { ok: false; reason: string } | undefined;

/**
 * The sender, loaded once: `address` is $NOTIFY_SOCKET as systemd sets it, an absolute path or
 * `@name` in the abstract namespace. Not available off Linux or when the addon was not built.
 */
export function loadSdNotify(): { ok: true; send: SdNotifySend } | { ok: false; reason: string } {
  loaded ??= load();
  return loaded;
}

function load(): { ok: true; send: SdNotifySend } | { ok: false; reason: string } {
  if (process.platform !== "linux") return { ok: false, reason: `systemd notification is Linux only (this is ${process.platform})` };
  const required = requireAddon<SdNotifyAddon>(SD_NOTIFY_ADDON_PATH);
  if (!required.ok) return required;
  const addon = required.addon;
  return { ok: true, send: (address, message) => addon.notify(address, message) };
}
