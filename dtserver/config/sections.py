"""The keys each section of dynamic_torque.conf accepts: the schema's and Dynamic Torque's
(dtserver/config/schema.py, dtserver/config/legacy.py), gathered once for the loader and
for describe()."""
from __future__ import annotations

from types import MappingProxyType
from typing import Mapping

from dtserver.config import legacy
from dtserver.config.keys import Field, fields_of
from dtserver.config.schema import POOL_SECTION, EventCommands, PoolSettings, Settings

ORDER = ("global", "torque", "cloud", "api", "logging")   # as describe() writes them

_ALL = (*fields_of(Settings), *fields_of(EventCommands), *legacy.FIELDS)

# section -> key name -> the field it fills; an alias names the same field as its key.
SECTIONS: Mapping[str, Mapping[str, Field]] = MappingProxyType({
    section: MappingProxyType({
        **{item.key.name: item for item in _ALL if item.key.section == section},
        **{alias: item for alias, canonical in legacy.ALIASES.items()
           for item in _ALL if item.key.section == section and item.key.name == canonical},
    })
    for section in ORDER})
POOL_KEYS: Mapping[str, Field] = MappingProxyType(
    {item.key.name: item for item in fields_of(PoolSettings)})

# Every key each section accepts ("pool" stands for every [pool NAME] section).
SECTION_KEYS: Mapping[str, tuple[str, ...]] = MappingProxyType({
    **{section: tuple(keys) for section, keys in SECTIONS.items()},
    POOL_SECTION: tuple(POOL_KEYS),
})


def sections_of(name: str) -> list[str]:
    """The sections where key `name` belongs, as a header would say them."""
    homes = [section for section, keys in SECTIONS.items() if name in keys]
    if name in POOL_KEYS:
        homes.append(f"{POOL_SECTION} NAME")
    return homes
