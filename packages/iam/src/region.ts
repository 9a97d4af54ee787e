import { getProfileName, loadConfig, NODE_REGION_CONFIG_FILE_OPTIONS, NODE_REGION_CONFIG_OPTIONS } from "@smithy/core/config";
import { isValidRegionName, regionFromRdsHostname } from "@rdsd/config";
import { configFilePath, credentialsFilePath } from "./aws-paths.js";

export { isValidRegionName, regionFromRdsHostname };

/** Where a resolved region came from, for `rdsd doctor` and error messages. */
export type RegionSource = "explicit" | "AWS_REGION" | "AWS_DEFAULT_REGION" | "profile" | "hostname";

export interface ResolvedRegion {
  region: string;
  source: RegionSource;
}

export interface RegionLookup {
  /** Region given in the rdsd config (aws.region or per target). Wins over everything. */
  region?: string | undefined;
  /** AWS profile whose `region` the shared config files may name. */
  profile?: string | undefined;
  /** Database endpoint; an RDS hostname carries its region. */
  host?: string | undefined;
  /** Environment for AWS_REGION / AWS_DEFAULT_REGION; defaults to process.env. (The shared files are found as the SDK finds them, from process.env.) */
  env?: NodeJS.ProcessEnv | undefined;
}

export class RegionNotFoundError extends Error {
  override name = "RegionNotFoundError";
  readonly fix: string;
  constructor(message: string, fix: string) {
    super(message);
    this.fix = fix;
  }
}

/** The region named by `profile` in the shared config/credentials files, via the SDK's own loader. */
export async function regionFromProfile(profile?: string): Promise<string | undefined> {
  const fromFiles = loadConfig(
    {
      // Only the file selector: env is checked by the caller (in our order), and the SDK's
      // default would query EC2 instance metadata over the network.
      environmentVariableSelector: () => undefined,
      configFileSelector: NODE_REGION_CONFIG_OPTIONS.configFileSelector,
      default: () => undefined,
    },
    // ignoreCache: the SDK otherwise keeps the first read of each file for the life of the process,
    // and a daemon must see edits made after it started.
    { ...NODE_REGION_CONFIG_FILE_OPTIONS, profile, ignoreCache: true },
  );
  const region = await fromFiles();
  return typeof region === "string" && region !== "" ? region : undefined;
}

/**
 * The region a target's AWS calls go to, as the AWS CLI would pick it for `--profile`: the rdsd config's
 * region (the target's, else defaults', else the top level's), else the profile's `region` in the shared
 * config files, else AWS_REGION, else AWS_DEFAULT_REGION, else the region in an RDS hostname.
 * Throws RegionNotFoundError (with a fix) when none applies.
 */
export async function resolveRegion(lookup: RegionLookup): Promise<ResolvedRegion> {
  const env = lookup.env ?? process.env;
  const explicit = lookup.region?.trim();
  if (explicit) return checked(explicit, "explicit");
  const fromProfile = await regionFromProfile(lookup.profile);
  if (fromProfile) return checked(fromProfile, "profile");
  const fromEnv = env["AWS_REGION"]?.trim();
  if (fromEnv) return checked(fromEnv, "AWS_REGION");
  const fromDefaultEnv = env["AWS_DEFAULT_REGION"]?.trim();
  if (fromDefaultEnv) return checked(fromDefaultEnv, "AWS_DEFAULT_REGION");
  const fromHost = lookup.host === undefined ? undefined : regionFromRdsHostname(lookup.host);
  if (fromHost) return { region: fromHost, source: "hostname" };

  const profileName = getProfileName({ profile: lookup.profile });
  const checkedPlaces = [
    "aws.region in the rdsd config",
    `region of profile ${profileName} in ${configFilePath()} and ${credentialsFilePath()}`,
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    lookup.host === undefined ? "no database host given" : `host ${lookup.host} is not an RDS endpoint name`,
  ];
  throw new RegionNotFoundError(
    `no AWS region found (checked: ${checkedPlaces.join("; ")})`,
    `set aws.region in the rdsd config, or AWS_REGION, or \`aws configure set region <region> --profile ${profileName}\``,
  );
}

/**
 * A region rdsd found outside its own config (the profile's, AWS_REGION, AWS_DEFAULT_REGION) that is not the one
 * an RDS host's name carries: the target's SSM calls would go to the wrong region. The problem and its fix, else
 * undefined. Regions written in the rdsd config are checked against the host at load; a host that is not an RDS
 * endpoint name never conflicts.
 */
export function regionConflict(resolved: ResolvedRegion, target: { name: string; host: string; profile?: string | undefined }): { message: string; fix: string } | undefined {
  const hostRegion = regionFromRdsHostname(target.host);
  if (hostRegion === undefined || resolved.source === "explicit" || resolved.source === "hostname" || resolved.region === hostRegion) return undefined;
  const configFix = `set aws: { region: ${hostRegion} } on target ${target.name} in the rdsd config`;
  if (resolved.source === "profile") {
    const profile = getProfileName({ profile: target.profile });
    return {
      message: `target ${target.name}: region ${resolved.region} (of profile ${profile} in ${configFilePath()}) does not match its host ${target.host}, which is in ${hostRegion}`,
      fix: `${configFix} (then \`rdsd reload\`), or correct the profile's region (\`aws configure set region ${hostRegion} --profile ${profile}\`, then \`rdsd restart ${target.name}\`)`,
    };
  }
  return {
    message: `target ${target.name}: region ${resolved.region} (from ${resolved.source}) does not match its host ${target.host}, which is in ${hostRegion}`,
    fix: `${configFix} (then \`rdsd reload\`), or set ${resolved.source} to ${hostRegion} in the daemon's environment and restart the daemon`,
  };
}

function checked(region: string, source: RegionSource): ResolvedRegion {
  if (!isValidRegionName(region)) {
    throw new RegionNotFoundError(
      `AWS region "${region}" (from ${source === "explicit" ? "the rdsd config" : source}) is not a region name`,
      "use a region name such as eu-west-2",
    );
  }
  return { region, source };
}
