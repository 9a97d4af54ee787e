// The small part of node-ipc 9.2.1 (CommonJS, no bundled types) that rdsd uses.
declare module "node-ipc" {
  import type { Socket } from "node:net";

  interface IpcConfig {
    id: string;
    silent: boolean;
    unlink: boolean;
    maxRetries: number | boolean;
    stopRetrying: boolean;
    retry: number;
    maxConnections: number;
    encoding: BufferEncoding;
  }

  interface IpcServer {
    on(event: "start", listener: () => void): IpcServer;
    on(event: "error", listener: (err: NodeJS.ErrnoException) => void): IpcServer;
    on(event: "socket.disconnected", listener: (socket: Socket) => void): IpcServer;
    on(event: string, listener: (data: unknown, socket: Socket) => void): IpcServer;
    emit(socket: Socket, type: string, data: unknown): void;
    start(): void;
    stop(): void;
    server: import("node:net").Server;
  }

  interface IpcClient {
    on(event: "connect" | "disconnect" | "destroy", listener: () => void): IpcClient;
    on(event: "error", listener: (err: NodeJS.ErrnoException) => void): IpcClient;
    on(event: string, listener: (data: unknown) => void): IpcClient;
    emit(type: string, data: unknown): void;
    socket: Socket | undefined;
  }

  class IPC {
    config: IpcConfig;
    server: IpcServer;
    of: Record<string, IpcClient>;
    serve(path: string, callback?: () => void): void;
    connectTo(id: string, path: string, callback?: () => void): void;
    disconnect(id: string): void;
  }

  const ipc: IPC & { IPC: typeof IPC };
  export default ipc;
}
