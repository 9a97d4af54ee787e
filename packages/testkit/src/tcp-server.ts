import { once } from "node:events";
import { connect, createServer, type AddressInfo, type Socket } from "node:net";

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

/**
 * A tcpServer that relays every connection to 127.0.0.1:`port`: put in front of a server, its `connections` count
 * what reached that server (a connection that is not destroyed is still open at both ends).
 */
export const relayServer = (port: number): Promise<TcpServer> =>
  tcpServer((socket) => {
    const upstream = connect({ host: "127.0.0.1", port });
    upstream.on("error", () => socket.destroy());
    socket.on("close", () => upstream.destroy());
    upstream.on("close", () => socket.destroy());
    socket.pipe(upstream);
    upstream.pipe(socket);
  });
