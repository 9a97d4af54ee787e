// AWS names the config checks and the rest of rdsd reads: region names, and the region an RDS
// endpoint's own hostname carries. Pure string rules, kept here so config and iam share one copy.

// Partition prefix, one or more words, a number (eu-west-2, us-gov-west-1, cn-north-1).
const REGION_PATTERN = /^[a-z]{2}(?:-[a-z]+)+-\d+$/;

// The label right before rds.amazonaws.com(.cn) is the region in every RDS endpoint shape:
//   <id>.<hash>.<region>.rds.amazonaws.com                instance
//   <c>.cluster-<hash>. / cluster-ro- / cluster-custom-    Aurora cluster endpoints
//   <p>.proxy-<hash>. and <e>.endpoint.proxy-<hash>.       RDS Proxy and its custom endpoints
//   *.rds.amazonaws.com.cn                                 China partition
const RDS_SUFFIX = /^(?<prefix>(?:[a-z0-9-]+\.){2,})(?<region>[a-z0-9-]+)\.rds\.amazonaws\.com(?:\.cn)?\.?$/;

export function isValidRegionName(region: string): boolean {
  return REGION_PATTERN.test(region);
}

/** The region encoded in an RDS endpoint hostname, or undefined when the host is not an RDS endpoint. */
export function regionFromRdsHostname(host: string): string | undefined {
  const match = RDS_SUFFIX.exec(host.trim().toLowerCase());
  const region = match?.groups?.["region"];
  return region !== undefined && isValidRegionName(region) ? region : undefined;
}
