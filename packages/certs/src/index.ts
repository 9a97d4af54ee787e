export {
  certificateAuthorityFromPem,
  createCertificateAuthority,
  type CertificateAuthority,
  type PemKeyPair,
  type ServerCertificateOptions,
} from "./authority.js";
export { issueLocalhostCertificate, loadOrCreateLocalCa, localCaPath, type LocalCa } from "./local-ca.js";
