import net from "node:net";

export interface DelayRelay {
  port: number;
  close(): Promise<void>;
}

/**
 * A TCP relay on loopback that holds every chunk `delayMs` before passing it on, both ways: a network with a
 * round trip of 2 x delayMs (an SSM tunnel's order of magnitude) between rdsd and the database. Order is kept
 * (equal delays fire in order). No backpressure: it carries logins and small queries only.
 */
export function startDelayRelay(target: { host: string; port: number }, delayMs: number): Promise<DelayRelay> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer({ noDelay: true }, (client) => {
    const upstream = net.connect({ host: target.host, port: target.port, noDelay: true });
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.once("close", () => sockets.delete(s));
      s.on("error", () => {});
    }
    const delayed = (from: net.Socket, to: net.Socket) => {
      from.on("data", (chunk: Buffer) => setTimeout(() => to.write(chunk), delayMs));
      from.once("end", () => setTimeout(() => to.end(), delayMs));
      from.once("close", () => setTimeout(() => to.destroy(), delayMs));
    };
    delayed(client, upstream);
    delayed(upstream, client);
  });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen({ host: "127.0.0.1", port: 0 }, () => {
      resolve({
        port: (server.address() as net.AddressInfo).port,
        close: () =>
          new Promise<void>((done) => {
            for (const s of sockets) s.destroy();
            server.close(() => done());
          }),
      });
    });
  });
}
