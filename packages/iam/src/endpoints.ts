import { booleanSelector, CONFIG_PREFIX_SEPARATOR, loadConfig, SelectorType } from "@smithy/core/config";

/**
 * The endpoint URL configured for a service, for one profile, as AWS CLI v2 applies it: AWS_ENDPOINT_URL_<SERVICE>,
 * then AWS_ENDPOINT_URL, then the profile's `services` section (`ssm = \n  endpoint_url = ...`), then the profile's
 * own `endpoint_url`; nothing when `ignore_configured_endpoint_urls` is set. The SDK's client does this only for
 * $AWS_PROFILE, so a daemon serving several profiles asks here, per profile, through the SDK's own file loader.
 * `serviceId` is the SDK's service id, e.g. "SSM".
 */
export async function configuredEndpoint(serviceId: string, profile: string | undefined): Promise<string | undefined> {
  // ignoreCache: a daemon must see edits to the shared files made after it started.
  const init = { profile, ignoreCache: true };
  const ignore = await loadConfig<boolean>(
    {
      environmentVariableSelector: (env) => booleanSelector(env, "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", SelectorType.ENV),
      configFileSelector: (section) => booleanSelector(section, "ignore_configured_endpoint_urls", SelectorType.CONFIG),
      default: false,
    },
    init,
  )();
  if (ignore) return undefined;
  const envSuffix = serviceId.split(" ").map((w) => w.toUpperCase()).join("_");
  const configKey = serviceId.split(" ").map((w) => w.toLowerCase()).join("_");
  const url = await loadConfig<string | undefined>(
    {
      environmentVariableSelector: (env) => env[`AWS_ENDPOINT_URL_${envSuffix}`] || env["AWS_ENDPOINT_URL"] || undefined,
      configFileSelector: (section, files) => {
        const servicesName = section["services"];
        const services = servicesName ? files?.[["services", servicesName].join(CONFIG_PREFIX_SEPARATOR)] : undefined;
        const url = services?.[[configKey, "endpoint_url"].join(CONFIG_PREFIX_SEPARATOR)];
        if (url) return url;
        return section["endpoint_url"] || undefined;
      },
      default: () => undefined,
    },
    init,
  )();
  return url || undefined;
}
