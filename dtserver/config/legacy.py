"""Dynamic Torque's keys: the names it gave what the schema now names otherwise, the keys
that define its one pool in [cloud] and [torque], its plaintext credentials, and the keys
whose concept is gone (each says what replaced it).

Its files load unchanged (tests/data/config/dynamic_torque_dt.conf). New concepts have
their own keys in dtserver/config/schema.py; nothing here is a second way to set them,
except the aliases, which read into the same field and are never written out.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Mapping

from dtserver.config.keys import Field, Key, fields_of, key, key_of
from dtserver.config.schema import DEFAULT_FLAVORS, PoolSettings
from dtserver.config.values import (
    HOSTNAME, PROPERTY, comma_list, non_negative_int, url)
from dtserver.policy import Pool

DEFAULT_POOL_NAME = "cloud"                 # the pool the [cloud] keys define

# Other names for a key of the same section: alias -> the key it stands for.
ALIASES: Mapping[str, str] = MappingProxyType({
    "pool_max_num": "max_cores",
    "cloud_tenant": "cloud_tenant_name",
    "worker_node_flavors": "worker_node_flavor",
})

# The [cloud] and [torque] keys that set a field of the pool [cloud] defines: its
# PoolSettings field -> (section, key). Each reads as the [pool NAME] key of that field.
_POOL_KEYS: Mapping[str, tuple[str, str]] = MappingProxyType({
    "properties": ("torque", "node_property"),
    "image": ("cloud", "cloud_image_uuid"),
    "flavors": ("cloud", "worker_node_flavor"),
    "zone": ("cloud", "cloud_availability_zone"),
    "name_prefix": ("cloud", "cloud_vm_prefix"),
    "key_name": ("cloud", "cloud_key_name"),
    "security_groups": ("cloud", "cloud_security_groups"),
    "network": ("cloud", "cloud_network"),
    "user_data_file": ("cloud", "cloud_vm_userdata_file"),
})
# The [pool NAME] keys a pool takes from [cloud]/[torque] when it omits them.
INHERITED = ("flavors", "image", "zone", "properties", "key_name", "security_groups",
             "network", "user_data_file")


def _pool_field(attribute: str) -> Field:
    section, name = _POOL_KEYS[attribute]
    return Field(Key(name, section, key_of(PoolSettings, attribute).parse), PoolSettings,
                 attribute)


POOL_FIELDS: tuple[Field, ...] = tuple(_pool_field(attribute) for attribute in _POOL_KEYS)


def pool_key_in_cloud(pool_key: str) -> str | None:
    """The [cloud]/[torque] name of a [pool NAME] key (image -> cloud_image_uuid)."""
    return next((item.key.name for item in POOL_FIELDS
                 if key_of(PoolSettings, item.attribute).name == pool_key), None)


def pool_key_of(cloud_key: str) -> str | None:
    """The [pool NAME] name of a [cloud]/[torque] pool key (cloud_image_uuid -> image)."""
    return next((key_of(PoolSettings, item.attribute).name for item in POOL_FIELDS
                 if item.key.name == cloud_key), None)


@dataclass(frozen=True)
class CloudAuth:
    """Dynamic Torque's plaintext credentials: they still load, with a warning (a clouds.yaml
    entry or OS_* variables are the way now). Settings.cloud_auth holds the ones set."""

    auth_url: str | None = field(default=None, metadata=key("cloud_auth_url", "cloud", url))
    username: str | None = field(default=None, metadata=key("cloud_username", "cloud"))
    password: str | None = field(default=None,
                                 metadata=key("cloud_password", "cloud", secret=True))
    project_name: str | None = field(default=None, metadata=key("cloud_tenant_name", "cloud"))


@dataclass(frozen=True)
class StaticCounts:
    """Dynamic Torque's `N[:LOCATION]+...`: N always-on nodes in each location."""

    by_location: tuple[tuple[str | None, int], ...]


_STATIC_COUNTS = re.compile(r"\d+(:[A-Za-z0-9_]+)?(\+\d+(:[A-Za-z0-9_]+)?)*\Z")


def static_nodes(value: str) -> StaticCounts | tuple[str, ...]:
    """Either DT's count form (`2`, `2:MEL+1:MON`) or a comma list of node names."""
    compact = value.replace(" ", "")
    if _STATIC_COUNTS.match(compact):
        counts: dict[str | None, int] = {}
        for part in compact.split("+"):
            number, _, location = part.partition(":")
            counts[location or None] = counts.get(location or None, 0) + int(number)
        return StaticCounts(tuple(counts.items()))
    names = comma_list(value)
    bad = [name for name in names if not HOSTNAME.match(name)]
    if bad:
        raise ValueError("expected N[:LOCATION]+... or a comma list of node names, "
                         f"got {', '.join(bad)}")
    return names


def locations(value: str) -> tuple[tuple[str, str], ...]:
    """node_location_property: `PROP:ZONE,...`, the job's property picks the zone."""
    pairs: dict[str, str] = {}
    for item in comma_list(value):
        prop, _, zone = item.partition(":")
        prop, zone = prop.strip(), zone.strip()
        if not PROPERTY.match(prop) or not zone:
            raise ValueError(f"expected PROPERTY:ZONE, got {item!r}")
        if prop in pairs:
            raise ValueError(f"property {prop} is mapped twice")
        pairs[prop] = zone
    return tuple(pairs.items())


@dataclass(frozen=True)
class DefaultPoolShape:
    """The keys that shape only the pool [cloud] defines: its always-on and dynamic node
    counts, and its split into one pool per zone. A list of names in static_worker_nodes
    is different: nodes we never touch (Settings.static_worker_nodes), valid with any pools.
    """

    static: StaticCounts | tuple[str, ...] | None = field(
        default=None, metadata=key("static_worker_nodes", "cloud", static_nodes))
    dynamic: int = field(default=Pool.max_nodes,
                         metadata=key("number_of_dynamic_worker_nodes", "cloud",
                                      non_negative_int))
    locations: tuple[tuple[str, str], ...] = field(
        default=(), metadata=key("node_location_property", "torque", locations))


FIELDS: tuple[Field, ...] = (*fields_of(CloudAuth), *POOL_FIELDS, *fields_of(DefaultPoolShape))
# The keys that shape only the pool [cloud] defines: an error beside [pool NAME] sections,
# which set name_prefix, zone and node counts each (a list of static names is fine).
DEFAULT_POOL_ONLY = frozenset({_POOL_KEYS["name_prefix"][1],
                               *(item.key.name for item in fields_of(DefaultPoolShape))})


class StaticError(ValueError):
    """static_worker_nodes does not fit the pools: the loader adds its line."""


def default_pools(base: Mapping[str, Any], shape: DefaultPoolShape) -> tuple[dict, ...]:
    """The pool [cloud] defines, as PoolSettings arguments: one pool, or one per zone when
    node_location_property maps properties to zones. `base` holds its [cloud]/[torque]
    fields; raises StaticError when static_worker_nodes names a location that is not one.
    """
    base = {"flavors": DEFAULT_FLAVORS, **base}
    counts = dict(shape.static.by_location) if isinstance(shape.static, StaticCounts) else {}
    if not shape.locations:
        if any(location is not None for location in counts):
            raise StaticError("a location needs node_location_property")
        min_nodes = counts.get(None, 0)
        return ({"name": DEFAULT_POOL_NAME, "min_nodes": min_nodes,
                 "max_nodes": min_nodes + shape.dynamic, **base},)
    zone = base.pop("zone", None)
    default_location = next((prop for prop, where in shape.locations if where == zone), None)
    if None in counts:
        if default_location is None:
            raise StaticError("a count without a location needs cloud_availability_zone to "
                              "be a node_location_property zone")
        counts[default_location] = counts.get(default_location, 0) + counts.pop(None)
    unknown = sorted(set(counts) - {prop for prop, _ in shape.locations})
    if unknown:
        raise StaticError(f"unknown location {', '.join(unknown)}")
    # The default zone's pool comes first: the planner tries pools in order, so a job
    # without a location property lands there, as Dynamic Torque's default_location 0.
    ordered = sorted(shape.locations, key=lambda pair: pair[0] != default_location)
    prefix = base.pop("name_prefix", f"{DEFAULT_POOL_NAME}-")
    properties = base.pop("properties", Pool.properties)
    return tuple(
        {"name": f"{DEFAULT_POOL_NAME}-{prop}", "zone": where,
         "properties": properties | {prop},
         "name_prefix": f"{prefix}{prop.lower().replace('_', '-')}-",
         "min_nodes": counts.get(prop, 0), "max_nodes": counts.get(prop, 0) + shape.dynamic,
         **base}
        for prop, where in ordered)


_TORQUE_COMMANDS = "TORQUE commands now run as argument lists from torque_bin_dir in [torque]"
_NO_SSH = "no ssh check any more: a node is ready when its pbs_mom reports to the server"
_NO_MAUI_RESERVATIONS = ("Maui reservations are replaced by [pool NAME] sections with "
                         "accounts or queues")
# Dynamic Torque keys whose concept is gone: key -> what replaced it.
OBSOLETE_KEYS: Mapping[str, str] = MappingProxyType({
    "pool_min_num": "the always-on floor is static_worker_nodes in [cloud] or min_nodes per pool",
    "persistent_file_location": "node records live in the database under state_dir",
    "qstat_command": _TORQUE_COMMANDS,
    "pbsnodes_command": _TORQUE_COMMANDS,
    "add_node_command": _TORQUE_COMMANDS,
    "remove_node_command": _TORQUE_COMMANDS,
    "set_node_command": _TORQUE_COMMANDS,
    "check_node_command": "Maui's checknode is not used: node state comes from pbsnodes -x",
    "diagnose_p_command": ("Maui's diagnose is not used: demand comes from qstat -x and "
                           "submit-filter hints"),
    "setres_command": _NO_MAUI_RESERVATIONS,
    "releaseres_command": _NO_MAUI_RESERVATIONS,
    "cloud_type": "OpenStack is the only cloud; driver in [cloud] picks nova or fake",
    "cloud_private_key_location": _NO_SSH,
    "cloud_shell_user": _NO_SSH,
    "cloud_vm_init_finish_file": _NO_SSH,
    "cloud_vm_init_file": "use cloud_vm_userdata_file",
    "cloud_resources_config": ("that file is not read: define each tenant as a [pool NAME] "
                               "section with accounts or queues"),
    "default_location": ("jobs without a location property go to the pool of "
                         "cloud_availability_zone first"),
    "max_number_of_jobs": "qstat -x is parsed streaming; there is no job limit",
    "log_stdout": "logs go to stdout when log_location is empty",
    "log_max_size": "rotate log_location with logrotate",
})
