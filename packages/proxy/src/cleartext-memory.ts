/**
 * What one target's server asked for at the last login of each upstream identity (user and database, what
 * pg_hba chooses the method by), so the next login can send its password in the same write as its startup
 * (saving a round trip) only when the server is known to want a cleartext password.
 *
 * IAM logins start out assuming it (RDS always asks IAM users for a cleartext password); a `password` login
 * must first have been asked. A server seen asking for anything else (SCRAM, MD5, nothing) is remembered too,
 * so neither method sends it an early password again until it asks for a cleartext one.
 */
export class CleartextMemory {
  /** Identity -> whether the server asked for a cleartext password. Insertion order is age. */
  private readonly asked = new Map<string, boolean>();

  constructor(private readonly maxEntries = 256) {}

  /** Whether the next login of this identity sends its password together with the startup message. */
  sendEarly(method: "iam" | "password", identity: UpstreamIdentity): boolean {
    const known = this.asked.get(identityKey(identity));
    return method === "iam" ? known !== false : known === true;
  }

  /** Records what the server asked for (`true`: a cleartext password) at a login of this identity. */
  learn(identity: UpstreamIdentity, askedCleartext: boolean): void {
    const key = identityKey(identity);
    this.asked.delete(key);
    this.asked.set(key, askedCleartext);
    // Clients choose the database name: keep the memory bounded, forgetting the oldest.
    if (this.asked.size > this.maxEntries) this.asked.delete(this.asked.keys().next().value!);
  }
}

/** The startup parameters pg_hba matches on (the address and TLS are the same for every login of a target). */
export interface UpstreamIdentity {
  user: string;
  database: string;
}

function identityKey(identity: UpstreamIdentity): string {
  return `${identity.user}\0${identity.database}`;
}
