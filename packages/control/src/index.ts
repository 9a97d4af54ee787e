// @rdsd/control: the CLI <-> daemon protocol over the Unix socket (node-ipc 9.2.1), typed once for both sides.
export * from "./messages.js";
export * from "./errors.js";
export * from "./paths.js";
export { requestDaemon, type RequestOptions } from "./client.js";
export { serveControl, type ControlServer, type ControlServerOptions } from "./server.js";
export { ensurePrivateDir } from "./private-dir.js";
