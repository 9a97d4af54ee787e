// @peculiar/x509 resolves its algorithms through tsyringe, which needs the Reflect metadata API
// installed before the library loads: this module is the only door to the library, in that order.
import "reflect-metadata";
import { webcrypto } from "node:crypto";
import { cryptoProvider } from "@peculiar/x509";

cryptoProvider.set(webcrypto as unknown as Parameters<typeof cryptoProvider.set>[0]);

export * from "@peculiar/x509";
