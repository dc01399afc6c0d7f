"""The effective configuration as INI text that the loader reads back (dtserver-check-config)."""
from __future__ import annotations

import shlex

from dtserver.config.keys import Field, fields_of
from dtserver.config.legacy import ALIASES, CloudAuth, DefaultPoolShape
from dtserver.config.schema import POOL_SECTION, EventCommands, PoolSettings, Settings
from dtserver.config.sections import ORDER, SECTIONS
from dtserver.redact import MASK, mask_argv, mask_text

_STATIC = next(item for item in fields_of(DefaultPoolShape) if item.attribute == "static")


def describe(settings: Settings) -> str:
    """The effective configuration as INI text that parse_settings reads back.

    Every key is written, unset ones empty. The pool [cloud] defines (and its split by
    node_location_property) appears as the [pool NAME] sections it became. Secrets are
    masked (dtserver/redact.py): they read back as the mask, not as the secret.
    """
    lines: list[str] = []
    for section in ORDER:
        lines.append(f"[{section}]")
        lines.extend(f"{name}: {_shown(settings, target)}".rstrip()
                     for name, target in SECTIONS[section].items()
                     if name not in ALIASES and _written(target))
        lines.append("")
    for pool in settings.pools:
        lines.append(f"[{POOL_SECTION} {pool.name}]")
        lines.extend(f"{item.key.name}: {_format(getattr(pool, item.attribute))}".rstrip()
                     for item in fields_of(PoolSettings))
        lines.append("")
    return "\n".join(lines)


def _written(target: Field) -> bool:
    """Pool keys are written in the [pool NAME] sections they became; of the keys that
    shape the pool [cloud] defines, only static_worker_nodes outlives it, as names."""
    return target.record in (Settings, EventCommands, CloudAuth) or target == _STATIC


def _shown(settings: Settings, target: Field, *, masked: bool = True) -> str:
    if target.record is CloudAuth:
        value = settings.cloud_auth.get(target.attribute)
        if value and masked:
            return MASK if target.key.secret else mask_text(value)
        return _format(value)
    if target.record is EventCommands:
        value = getattr(settings.events, target.attribute)
        if isinstance(value, tuple):
            return shlex.join(mask_argv(value) if masked else value)
        return _format(value)
    if target == _STATIC:
        return _format(settings.static_worker_nodes)
    return _format(getattr(settings, target.attribute))


def secret_keys(settings: Settings) -> list[str]:
    """The keys whose value describe() masks (dtserver/redact.py's rule)."""
    return [item.key.name for item in (*fields_of(EventCommands), *fields_of(CloudAuth))
            if _shown(settings, item) != _shown(settings, item, masked=False)]


def _format(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, frozenset):
        return ",".join(sorted(value))
    if isinstance(value, tuple):
        return ",".join(value)
    return str(value)
