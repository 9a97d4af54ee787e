import { once } from "node:events";
import { createServer, type AddressInfo, type Socket } from "node:net";

export interface TcpServer {
  port: number;
  /** Every connection accepted so far, in order of arrival. */
  connections: Socket[];
  /** Destroys every connection, then closes the server. */
  close(): Promise<void>;
}

/** A TCP server on 127.0.0.1 (port 0) running `handler` per connection. Clients that abort are part of the tests. */
export async function tcpServer(handler: (socket: Socket) => void): Promise<TcpServer> {
  const connections: Socket[] = [];
  const server = createServer((socket) => {
    connections.push(socket);
    socket.on("error", () => {});
    handler(socket);
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  return {
    port: (server.address() as AddressInfo).port,
    connections,
    close: async () => {
      for (const socket of connections) socket.destroy();
      server.close();
      await once(server, "close");
    },
  };
}

/** A tcpServer that sends every byte back. */
export const echoServer = (): Promise<TcpServer> => tcpServer((socket) => socket.pipe(socket));
