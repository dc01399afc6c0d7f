"""Build the python-novaclient Client NovaCloud talks through: credentials, session, version.

Credentials, first found wins:
1. `cloud_name`: an entry of clouds.yaml, read by openstacksdk's maintained loader
   (openstack.config), which also merges secure.yaml and knows every auth plugin;
2. OS_* environment variables (OS_CLOUD naming a clouds.yaml entry, or OS_AUTH_URL and
   friends), read by the same loader;
3. Dynamic Torque's plaintext keys (auth_url, username, password, project_name), which
   still load, with a warning.

The compute microversion is pinned rather than "latest", so a cloud upgrade never changes
the response shapes under us: 2.96, the newest python-novaclient knows and the one FakeNova
and the harness were checked at. A server that stops below it is accepted down to 2.52 (see
`negotiate_microversion`).
"""
from __future__ import annotations

import logging
import os
import warnings
from typing import Any, Mapping

import novaclient
from keystoneauth1 import exceptions as ks_exc
from novaclient import api_versions
from novaclient import client as nova_client
from novaclient import exceptions as nova_exc
from openstack import config as os_config
from openstack import exceptions as sdk_exc
from openstack import warnings as sdk_warnings

from dtserver.cloud import CloudError
from dtserver.cloud.nova import classify
from dtserver.model import ErrorKind
from dtserver.redact import mask_text

logger = logging.getLogger(__name__)

MICROVERSION = "2.96"
# Tags sent with the create itself (2.52): with fewer, NovaCloud tags right after the
# create, and a crash between the two calls leaves an untagged instance it never lists
# again. 2.52 also implies 2.37 (explicit nics) and 2.26 (tag filters on the list).
MIN_MICROVERSION = "2.52"
DEFAULT_TIMEOUT = 60.0        # seconds per request, unless the cloud config sets api_timeout

PLAINTEXT_KEYS = ("auth_url", "username", "password", "project_name")
# Keystone's default domain: Dynamic Torque's plaintext keys never named one.
_DEFAULT_DOMAIN = "Default"
# Variables that only select or locate a configuration; alone they carry no credentials.
_SELECTORS = frozenset({"OS_REGION_NAME", "OS_CLIENT_CONFIG_FILE", "OS_CLIENT_SECURE_FILE",
                        "OS_CLOUD_NAME"})
# Test-runner variables the loader ignores too (OS_TEST_*, OS_STDOUT_CAPTURE, OS_LOG_*).
_IGNORED_PREFIXES = ("OS_TEST", "OS_STD", "OS_LOG")


def build_nova_client(*, cloud_name: str | None, auth: Mapping[str, str], region: str | None,
                      microversion: str = MICROVERSION) -> Any:
    """A novaclient v2 Client over a keystoneauth1 session, at the negotiated microversion.

    Asks the server for its version range once (one GET). Raises CloudError: AUTH when no
    usable credentials are configured, otherwise as `classify` decides.
    """
    requested = api_versions.APIVersion(microversion)
    if not api_versions.APIVersion(MIN_MICROVERSION) <= requested <= novaclient.API_MAX_VERSION:
        raise ValueError(f"microversion {microversion} is outside {MIN_MICROVERSION} to "
                         f"{novaclient.API_MAX_VERSION.get_string()} (python-novaclient's newest)")
    region_config = cloud_region(cloud_name=cloud_name, auth=auth, region=region)
    if region_config.config.get("api_timeout") is None:
        region_config.config["api_timeout"] = DEFAULT_TIMEOUT   # read by get_session()
    try:
        session = region_config.get_session()
        options = _client_options(region_config)
        probe = nova_client.Client(requested, session=session, **options)
        current = probe.versions.get_current()
    except (nova_exc.ClientException, ks_exc.ClientException, OSError) as exc:
        error = classify(exc)
        logger.warning("nova version discovery failed kind=%s error=%s", error.kind, error)
        raise error from exc
    except sdk_exc.ConfigException as exc:
        raise CloudError(ErrorKind.AUTH, f"cloud configuration: {exc}") from exc
    server_min = getattr(current, "min_version", "") if current is not None else ""
    server_max = getattr(current, "version", "") if current is not None else ""
    if not server_max:
        # Some deployments refuse the version document (401); the first real call will
        # tell whether the pinned version is spoken.
        logger.warning("nova version range unknown microversion=%s", requested.get_string())
        return probe
    chosen = negotiate_microversion(microversion, server_min, server_max)
    logger.info("nova client ready microversion=%s server_min=%s server_max=%s region=%s",
                chosen.get_string(), server_min, server_max, region_config.region_name or "-")
    if chosen == requested:
        return probe
    return nova_client.Client(chosen, session=session, **options)


def negotiate_microversion(requested: str, server_min: str,
                           server_max: str) -> api_versions.APIVersion:
    """The requested version if the server speaks it; else the server's newest if that is
    still MIN_MICROVERSION or later. Raises CloudError (OTHER: retrying cannot help)."""
    wanted = api_versions.APIVersion(requested)
    low = api_versions.APIVersion(server_min or "2.1")
    high = api_versions.APIVersion(server_max)
    floor = api_versions.APIVersion(MIN_MICROVERSION)
    if low > wanted:
        raise CloudError(ErrorKind.OTHER, f"Nova's oldest microversion {server_min} is newer "
                                          f"than the {wanted.get_string()} we speak")
    if high >= wanted:
        return wanted
    if high >= floor:
        logger.info("nova microversion negotiated down requested=%s server_max=%s",
                    wanted.get_string(), server_max)
        return high
    raise CloudError(ErrorKind.OTHER, f"Nova speaks microversions up to {server_max}; "
                                      f"we need {MIN_MICROVERSION} or later")


def cloud_region(*, cloud_name: str | None, auth: Mapping[str, str], region: str | None,
                 environ: Mapping[str, str] | None = None) -> os_config.cloud_region.CloudRegion:
    """Resolve the credentials (no network call). Raises CloudError(AUTH) when none are
    configured or the configuration is incomplete."""
    environ = os.environ if environ is None else environ
    region_name = region or ""
    try:
        if cloud_name:
            logger.info("cloud credentials source=clouds.yaml cloud=%s", cloud_name)
            return _get_one(os_config.OpenStackConfig(), cloud=cloud_name,
                            region_name=region_name)
        if has_os_variables(environ):
            logger.info("cloud credentials source=environment cloud=%s",
                        environ.get("OS_CLOUD") or "OS_* variables")
            return _get_one(os_config.OpenStackConfig(), region_name=region_name)
        if auth:
            return _plaintext_region(auth, region_name)
    except (sdk_exc.ConfigException, ks_exc.ClientException) as exc:
        raise CloudError(ErrorKind.AUTH, f"cloud credentials: {exc}") from exc
    raise CloudError(ErrorKind.AUTH, "no cloud credentials: set cloud_name (a clouds.yaml "
                                     "entry) or OS_* environment variables")


def has_os_variables(environ: Mapping[str, str]) -> bool:
    """OS_CLOUD, or any OS_* variable that carries configuration (as openstack.config
    decides whether to make its "envvars" cloud)."""
    return any(key.startswith("OS_") and key not in _SELECTORS
               and not key.startswith(_IGNORED_PREFIXES) for key in environ)


def _plaintext_region(auth: Mapping[str, str],
                      region_name: str) -> os_config.cloud_region.CloudRegion:
    missing = [key for key in PLAINTEXT_KEYS if not auth.get(key)]
    if missing:
        raise CloudError(ErrorKind.AUTH, f"plaintext cloud credentials lack {', '.join(missing)}")
    # Never the password: only which keys were used and where they point.
    logger.warning("cloud credentials source=plaintext auth_url=%s username=%s project=%s: "
                   "prefer cloud_name (a clouds.yaml entry) or OS_* environment variables",
                   mask_text(auth["auth_url"]), auth["username"], auth["project_name"])
    credentials = {key: auth[key] for key in PLAINTEXT_KEYS}
    credentials.setdefault("user_domain_name", auth.get("user_domain_name") or _DEFAULT_DOMAIN)
    credentials.setdefault("project_domain_name",
                           auth.get("project_domain_name") or _DEFAULT_DOMAIN)
    loader = os_config.OpenStackConfig(load_yaml_config=False, load_envvars=False)
    return _get_one(loader, auth_type="password", auth=credentials, region_name=region_name)


def _get_one(loader: os_config.OpenStackConfig,
             **options: Any) -> os_config.cloud_region.CloudRegion:
    with warnings.catch_warnings():
        # openstacksdk 4.x warns that its InfluxDB metrics are deprecated on every
        # get_one(), configured or not: noise, and an error where warnings are errors.
        warnings.filterwarnings("ignore", message="Support for InfluxDB",
                                category=sdk_warnings.RemovedInSDK60Warning)
        return loader.get_one(**options)


def _client_options(region_config: os_config.cloud_region.CloudRegion) -> dict[str, Any]:
    """Where the compute endpoint is, as the cloud config says."""
    options: dict[str, Any] = {
        "region_name": region_config.region_name or None,
        "endpoint_type": region_config.get_interface("compute") or "public",
        "service_type": region_config.get_service_type("compute") or "compute",
    }
    endpoint = region_config.get_endpoint("compute")
    if endpoint:
        options["endpoint_override"] = endpoint
    return options
