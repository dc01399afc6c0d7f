"""Settings -> the planner's Policy: flavor names resolved against the cloud, seconds
turned into timedeltas, each pool's user-data file read."""
from __future__ import annotations

from dataclasses import fields
from datetime import timedelta
from typing import Mapping

from dtserver.config.errors import ConfigError, nearest
from dtserver.config.schema import PoolSettings, Settings
from dtserver.model import Flavor
from dtserver.policy import HintTrust, IdleRelease, Policy, Pool

# The fields a PoolSettings hands to its Pool as they are: every one both records share
# by name. Only flavors (names -> Flavors) and the user-data (file -> text) are converted.
_SHARED = tuple(sorted({item.name for item in fields(PoolSettings)}
                       & {item.name for item in fields(Pool)} - {"flavors"}))


def build_policy(settings: Settings, flavors: Mapping[str, Flavor]) -> Policy:
    """The planner's Policy: flavor names resolved against the cloud's flavors (by name),
    seconds turned into timedeltas, each pool's user-data file read."""
    return Policy(
        pools=tuple(_policy_pool(pool, flavors) for pool in settings.pools),
        queues=settings.queues,
        max_cores=settings.max_cores,
        max_booting=settings.max_booting,
        idle_timeout=timedelta(seconds=settings.idle_timeout),
        down_timeout=timedelta(seconds=settings.down_timeout),
        boot_timeout=timedelta(seconds=settings.boot_timeout),
        hint_ttl=timedelta(seconds=settings.effective_hint_ttl),
        hints=HintTrust(cores_per_user=settings.hint_cores_per_user,
                        cores_per_source=settings.hint_cores_per_source,
                        cores_total=settings.hint_cores_total,
                        max_array=settings.hint_max_array, strikes=settings.hint_strikes,
                        penalty=timedelta(seconds=settings.hint_penalty),
                        idle_timeout=timedelta(seconds=settings.prewarm_idle_time)),
        idle_release=IdleRelease(enabled=settings.idle_release == "demand",
                                 min_idle=timedelta(seconds=settings.min_idle_time)),
        backoff_base=timedelta(seconds=settings.backoff_base),
        backoff_cap=timedelta(seconds=settings.backoff_cap),
        max_boot_failures=settings.max_boot_failures,
    )


def _policy_pool(pool: PoolSettings, flavors: Mapping[str, Flavor]) -> Pool:
    missing = [name for name in pool.flavors if name not in flavors]
    if missing:
        raise ConfigError(
            f"pool {pool.name}: unknown flavor {', '.join(missing)}; the cloud has "
            f"{', '.join(sorted(flavors)) or 'none'}",
            suggestion=nearest(missing[0], list(flavors)))
    user_data = None
    if pool.user_data_file is not None:
        try:
            user_data = pool.user_data_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"pool {pool.name}: cannot read its user-data file: {exc}",
                              key="user_data_file") from None
    return Pool(flavors=tuple(flavors[name] for name in pool.flavors),
                user_data_template=user_data,
                **{name: getattr(pool, name) for name in _SHARED})
