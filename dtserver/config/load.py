"""dynamic_torque.conf -> one frozen, typed Settings value.

The file stays compatible with the old Dynamic Torque: INI with `key: value`, sections
[global] [cloud] [torque] [logging], and its keys keep their meaning. New concepts get new
sections: [api] and any number of [pool NAME]. Which keys there are and where each goes is
declared once, on the fields of dtserver/config/schema.py and dtserver/config/legacy.py.

Unknown keys are errors naming the file, the line and the nearest valid key. Obsolete
Dynamic Torque keys load with a warning saying what replaced them. Warnings are returned in
Settings.warnings rather than logged, because logging is configured from this very file:
the caller logs them once it is.
"""
from __future__ import annotations

import configparser
import os
import re
import stat
from dataclasses import dataclass, replace
from typing import Any, Mapping

from dtserver.config import legacy
from dtserver.config.describe import secret_keys
from dtserver.config.errors import ConfigError, located, nearest
from dtserver.config.keys import Field
from dtserver.config.legacy import OBSOLETE_KEYS, CloudAuth, DefaultPoolShape
from dtserver.config.schema import (
    DEFAULT_FLAVORS, POOL_SECTION, EventCommands, PoolSettings, Settings)
from dtserver.config.sections import POOL_KEYS, SECTIONS, sections_of
from dtserver.config.values import HOSTNAME_MAX, HOSTNAME_PREFIX, POOL_NAME, SHELL_SYNTAX

_SECTION_HEADER = re.compile(r"\[(?P<header>.+)\]")   # as configparser.SECTCRE
_OPTION = re.compile(r"(?P<option>.*?)\s*[=:]")


@dataclass(frozen=True)
class _Value:
    value: Any
    key: str
    section: str
    line: int | None


class _Reader:
    """One pass over one file: values by the field each fills, with where each came from."""

    def __init__(self, text: str, source: str) -> None:
        self.source = source
        self.lines = _index_lines(text)
        self.warnings: list[str] = []
        self.parser = configparser.ConfigParser(
            interpolation=None, strict=True, empty_lines_in_values=False,
            comment_prefixes=("#", ";"), inline_comment_prefixes=None)
        try:
            self.parser.read_string(text, source=source)
        except configparser.DuplicateSectionError as exc:
            raise self.error(f"section [{exc.section}] appears twice", line=exc.lineno) from None
        except configparser.DuplicateOptionError as exc:
            raise self.error("key appears twice in this section", line=exc.lineno,
                             section=exc.section, key=exc.option) from None
        except configparser.MissingSectionHeaderError as exc:
            raise self.error("a `key: value` line before any [section]",
                             line=exc.lineno) from None
        except configparser.ParsingError as exc:
            # The offending text is left out: it may hold a password.
            raise self.error("cannot parse this line: expected `[section]` or `key: value` "
                             "(a line starting with a space continues the previous value)",
                             line=exc.errors[0][0]) from None
        if self.parser.defaults():
            raise self.error("a [DEFAULT] section is not supported",
                             line=self.lines.get(("DEFAULT", None)))

    def error(self, message: str, *, line: int | None = None, section: str | None = None,
              key: str | None = None, suggestion: str | None = None) -> ConfigError:
        return ConfigError(message, source=self.source, line=line, section=section, key=key,
                           suggestion=suggestion)

    def warn(self, message: str, *, section: str, key: str) -> None:
        line = self.lines.get((section, key))
        self.warnings.append(located(message, self.source, line, section, key))

    def line(self, section: str, key: str | None = None) -> int | None:
        return self.lines.get((section, key))

    def read(self, section: str, keys: Mapping[str, Field]) -> dict[Field, _Value]:
        """The section's set keys by the field each fills; blank values count as unset,
        as in DT."""
        values: dict[Field, _Value] = {}
        for name, raw in self.parser[section].items():
            line = self.line(section, name)
            target = keys.get(name)
            if target is None:
                self._unknown(section, name, keys)
                continue
            if not raw:
                continue
            if "\n" in raw:
                raise self.error("a value must fit on one line (an indented line continues "
                                 "the previous value)", line=line, section=section, key=name)
            try:
                value = target.key.parse(raw)
            except ValueError as exc:
                raise self.error(str(exc), line=line, section=section, key=name) from None
            if target in values:
                first = values[target]
                raise self.error(f"{first.key} (line {first.line}) already sets this; keep one",
                                 line=line, section=section, key=name)
            values[target] = _Value(value, name, section, line)
            self._check_value(section, name, value)
        return values

    def _unknown(self, section: str, name: str, keys: Mapping[str, Field]) -> None:
        if name in OBSOLETE_KEYS:
            if self.parser[section][name]:
                self.warn(f"obsolete and ignored: {OBSOLETE_KEYS[name]}", section=section,
                          key=name)
            return
        line = self.line(section, name)
        translated = _translated_pool_key(name, section)
        homes = [home for home in sections_of(name) if home != section]
        if homes and not translated:
            raise self.error(f"belongs in {' or '.join(f'[{home}]' for home in homes)}",
                             line=line, section=section, key=name)
        raise self.error("unknown key", line=line, section=section, key=name,
                         suggestion=translated or nearest(name, list(keys)))

    def _check_value(self, section: str, name: str, value: Any) -> None:
        if name == "log_level" and self.parser[section][name].upper() == "VERBOSE":
            self.warn("VERBOSE is DEBUG now", section=section, key=name)
        if name.endswith("_command"):
            syntax = sorted({char for arg in value for char in arg} & SHELL_SYNTAX)
            if syntax:
                self.warn(f"commands run without a shell now: {' '.join(syntax)} reach the "
                          "command as literal characters; put shell syntax in a script",
                          section=section, key=name)
        if name == "cloud_auth_url" and value.rstrip("/").endswith("/v2.0"):
            self.warn("Keystone v2.0 is gone: use the v3 endpoint", section=section, key=name)


def _index_lines(text: str) -> dict[tuple[str, str | None], int]:
    """(section, key) -> line number; (section, None) is the header. configparser keeps no
    line numbers, and an error without one sends the admin hunting through the file."""
    index: dict[tuple[str, str | None], int] = {}
    section = ""
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line[0] in " \t#;":
            continue
        header = _SECTION_HEADER.match(line.strip())
        if header:
            section = header["header"]
            index.setdefault((section, None), number)
            continue
        option = _OPTION.match(line)
        if option:
            index.setdefault((section, option["option"].strip().lower()), number)
    return index


def _translated_pool_key(name: str, section: str) -> str | None:
    """A pool key under its other name: DT's [cloud] name in a [pool NAME] section
    (cloud_image_uuid -> image), or a pool key in [cloud] (image -> cloud_image_uuid)."""
    if section.startswith(f"{POOL_SECTION} "):
        pool_key = legacy.pool_key_of(name)
        return pool_key if name in SECTIONS["cloud"] else None
    if section == "cloud":
        cloud_key = legacy.pool_key_in_cloud(name)
        return cloud_key if cloud_key in SECTIONS["cloud"] else None
    return None


def _section_suggestion(section: str) -> str | None:
    found = nearest(section, [*SECTIONS, f"{POOL_SECTION} NAME"])
    return f"[{found}]" if found else None


# --- assembling ------------------------------------------------------------------------

def parse_settings(text: str, *, source: str = "<string>") -> Settings:
    """Settings from the text of a dynamic_torque.conf; raises ConfigError."""
    reader = _Reader(text, source)
    values: dict[Field, _Value] = {}
    pool_sections: list[str] = []
    for section in reader.parser.sections():
        if section in SECTIONS:
            values.update(reader.read(section, SECTIONS[section]))
        elif section.split(None, 1)[0] == POOL_SECTION:
            pool_sections.append(section)
        else:
            raise reader.error("unknown section", line=reader.line(section),
                               suggestion=_section_suggestion(section))
    _warn_plaintext_credentials(reader, values)
    if pool_sections:
        pools = _explicit_pools(reader, values, pool_sections)
    else:
        pools = _default_pools(reader, values)
    static = _of(values, DefaultPoolShape).get("static")
    settings = Settings(
        **_of(values, Settings),
        cloud_auth=_of(values, CloudAuth),
        events=EventCommands(**_of(values, EventCommands)),
        pools=pools,
        static_worker_nodes=static if isinstance(static, tuple) else (),
        warnings=tuple(reader.warnings),
    )
    _check_settings(reader, settings, values)
    return settings


def _of(values: Mapping[Field, _Value], record: type) -> dict[str, Any]:
    """The values read for `record`'s fields, by attribute."""
    return {target.attribute: item.value for target, item in values.items()
            if target.record is record}


def _item(values: Mapping[Field, _Value], record: type, attribute: str) -> _Value | None:
    return next((item for target, item in values.items()
                 if target.record is record and target.attribute == attribute), None)


def load_settings(path: os.PathLike | str) -> Settings:
    """Settings from a dynamic_torque.conf file; raises ConfigError.

    A file that holds a secret (a password, a token in an event command) warns when group
    or others may read it: with the API as its own user in the service's group, a
    group-readable password is the API's too.
    """
    try:
        with open(path, encoding="utf-8") as file:
            text = file.read()
            mode = os.fstat(file.fileno()).st_mode
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the configuration: {exc}", source=str(path)) from None
    settings = parse_settings(text, source=str(path))
    secrets = secret_keys(settings)
    if secrets and mode & (stat.S_IRGRP | stat.S_IROTH):
        settings = replace(settings, warnings=(*settings.warnings, (
            f"{path}: holds secrets ({', '.join(secrets)}) and is readable by group/others "
            f"(mode {stat.S_IMODE(mode):04o}): chmod 600 it, owned by the reconciler's user, "
            "or move the credentials to clouds.yaml (docs/operations.md)")))
    return settings


def _warn_plaintext_credentials(reader: _Reader, values: dict[Field, _Value]) -> None:
    keys = [item.key for target, item in values.items() if target.record is CloudAuth]
    if keys:
        reader.warn(f"plaintext credentials ({', '.join(keys)}) still load, but prefer "
                    "cloud_name (a clouds.yaml entry) or OS_* environment variables",
                    section="cloud", key=keys[0])


def _default_pools(reader: _Reader, values: dict[Field, _Value]) -> tuple[PoolSettings, ...]:
    """The pool the [cloud] keys define, split per zone by node_location_property."""
    base = _of(values, PoolSettings)
    if "image" not in base:
        raise reader.error(f"missing image for pool {legacy.DEFAULT_POOL_NAME}: set "
                           "cloud_image_uuid (or add [pool NAME] sections)",
                           line=reader.line("cloud"), section="cloud", key="cloud_image_uuid")
    try:
        pools = legacy.default_pools(base, DefaultPoolShape(**_of(values, DefaultPoolShape)))
    except legacy.StaticError as error:
        static = _item(values, DefaultPoolShape, "static")
        raise reader.error(str(error), line=static.line if static else None, section="cloud",
                           key="static_worker_nodes") from None
    return tuple(_pool(reader, values, **pool) for pool in pools)


def _explicit_pools(reader: _Reader, values: dict[Field, _Value],
                    sections: list[str]) -> tuple[PoolSettings, ...]:
    for item in values.values():
        if item.key in legacy.DEFAULT_POOL_ONLY and not (
                item.key == "static_worker_nodes" and isinstance(item.value, tuple)):
            raise reader.error("shapes only the pool [cloud] defines, and there are [pool NAME] "
                               "sections: set name_prefix, zone, min_nodes and max_nodes in "
                               "each pool", line=item.line, section=item.section, key=item.key)
    inherited = {"flavors": DEFAULT_FLAVORS,
                 **{name: value for name, value in _of(values, PoolSettings).items()
                    if name in legacy.INHERITED}}
    pools: list[PoolSettings] = []
    for section in sections:
        parts = section.split(None, 1)
        name = parts[1].strip() if len(parts) == 2 else ""
        if not POOL_NAME.match(name):
            raise reader.error("a pool section is [pool NAME], NAME of letters, digits, "
                               f"'_', '.' or '-', got [{section}]", line=reader.line(section))
        if any(pool.name == name for pool in pools):
            raise reader.error(f"pool {name} is defined twice", line=reader.line(section))
        own = _of(reader.read(section, POOL_KEYS), PoolSettings)
        merged = {**inherited, **own}
        if "image" not in merged:
            raise reader.error(f"missing image for pool {name}: set image here or "
                               "cloud_image_uuid in [cloud]", line=reader.line(section),
                               section=section, key="image")
        pools.append(_pool(reader, values, name=name, section=section, **merged))
    return tuple(pools)


def _pool(reader: _Reader, values: dict[Field, _Value], *, section: str = "cloud",
          **kwargs: Any) -> PoolSettings:
    pool = PoolSettings(**kwargs)
    prefix_key = "name_prefix" if section != "cloud" else "cloud_vm_prefix"
    if pool.min_nodes > pool.max_nodes:
        raise reader.error(f"pool {pool.name}: min_nodes {pool.min_nodes} exceeds max_nodes "
                           f"{pool.max_nodes}", line=reader.line(section, "min_nodes") or
                           reader.line(section), section=section, key="min_nodes")
    prefix = pool.name_prefix or f"{pool.name}-"
    width = max(3, len(str(pool.max_nodes)))
    if not HOSTNAME_PREFIX.match(prefix) or len(prefix) + width > HOSTNAME_MAX:
        raise reader.error(f"pool {pool.name}: its node names would start with {prefix!r}, "
                           f"not a lowercase hostname of at most {HOSTNAME_MAX} characters; "
                           "set a name prefix", line=reader.line(section, prefix_key) or
                           reader.line(section), section=section, key=prefix_key)
    monitored = _of(values, Settings).get("queues", frozenset())
    unmonitored = sorted(pool.queues - monitored) if monitored else []
    if unmonitored:
        raise reader.error(f"pool {pool.name} serves queue {', '.join(unmonitored)}, which "
                           "torque_queue_to_monitor leaves out", line=reader.line(
                               section, "queues"), section=section, key="queues")
    return pool


def _check_settings(reader: _Reader, settings: Settings, values: dict[Field, _Value]) -> None:
    if settings.backoff_cap < settings.backoff_base:
        item = _item(values, Settings, "backoff_cap") or _item(values, Settings, "backoff_base")
        raise reader.error(f"backoff_cap_seconds {settings.backoff_cap:g} is below "
                           f"backoff_base_seconds {settings.backoff_base:g}",
                           line=item.line if item else None, section="global",
                           key=item.key if item else None)
    prefixes: dict[str, str] = {}
    for pool in settings.pools:
        prefix = pool.name_prefix or f"{pool.name}-"
        if prefix in prefixes:
            raise reader.error(f"pools {prefixes[prefix]} and {pool.name} would both name "
                               f"their nodes {prefix}NNN: give each its own name_prefix")
        prefixes[prefix] = pool.name
