import type { TunnelFactory } from "@rdsd/daemon";

/** The SSM tunnel drivers, when this build has them (@rdsd/tunnel). */
export async function tunnelFactory(): Promise<TunnelFactory | undefined> {
  return undefined;
}
