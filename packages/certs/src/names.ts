import { isIP } from "node:net";

// A DNS label: letters, digits, hyphens, not starting or ending with a hyphen, at most 63 characters.
const DNS_LABEL = /^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$/;

/** Accepts host names such as "localhost" or "db.abc.eu-west-2.rds.amazonaws.com", and a leading "*." wildcard. */
export function assertDnsName(name: string): void {
  const labels = name.startsWith("*.") ? name.slice(2).split(".") : name.split(".");
  if (name.length === 0 || name.length > 253 || !labels.every((label) => DNS_LABEL.test(label))) {
    throw new Error(`invalid DNS name for a certificate: ${JSON.stringify(name)}`);
  }
}

export function assertIpAddress(address: string): void {
  if (isIP(address) === 0) throw new Error(`invalid IP address for a certificate: ${JSON.stringify(address)}`);
}

export function assertValidDays(days: number): void {
  if (!Number.isFinite(days) || days <= 0) throw new Error(`validDays must be a positive number, got ${days}`);
}
