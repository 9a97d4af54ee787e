/** Request codes that take the place of a protocol version in the first packet a client sends. */
export const SSL_REQUEST_CODE = 80877103;
export const GSSENC_REQUEST_CODE = 80877104;
export const CANCEL_REQUEST_CODE = 80877102;

/** The startup packet limits PostgreSQL itself applies (src/include/libpq/pqcomm.h). */
export const MIN_STARTUP_PACKET_LENGTH = 8;
export const MAX_STARTUP_PACKET_LENGTH = 10_000;

/** Cancel keys: 4 bytes in protocol 3.0, up to 256 bytes in 3.2. */
export const MIN_CANCEL_KEY_LENGTH = 4;
export const MAX_CANCEL_KEY_LENGTH = 256;

/** A TLS handshake record starts with this byte: a client trying direct TLS (PostgreSQL 17 `sslnegotiation=direct`). */
export const TLS_HANDSHAKE_RECORD = 0x16;

/** The ALPN protocol name PostgreSQL clients send with direct TLS. */
export const POSTGRES_ALPN = "postgresql";

/** SQLSTATE codes rdsd uses in its own ErrorResponses. */
export const SqlState = {
  protocolViolation: "08P01",
  connectionFailure: "08006",
  unableToConnect: "08001",
  invalidAuthorization: "28000",
  invalidPassword: "28P01",
  featureNotSupported: "0A000",
  tooManyConnections: "53300",
  adminShutdown: "57P01",
  cannotConnectNow: "57P03",
  configurationError: "F0000",
  readOnlySqlTransaction: "25006",
} as const;
export type SqlStateCode = (typeof SqlState)[keyof typeof SqlState];
