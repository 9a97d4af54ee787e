export {
  certificateAuthorityFromPem,
  createCertificateAuthority,
  type CertificateAuthority,
  type PemKeyPair,
  type ServerCertificateOptions,
} from "./authority.js";
export { issueLocalhostCertificate, loadOrCreateLocalCa, type LocalCa } from "./local-ca.js";
