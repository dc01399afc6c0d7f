"""How the schema declares a config key: metadata on the dataclass field it fills.

A field carries `metadata=key(name, section, parse)`; `fields_of(record)` lists a record's
keyed fields. The key's name is what the file says, the field is where the value goes:
one declaration, no routing table to keep in step with the dataclasses.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Callable, Mapping

from dtserver.config.values import text

_METADATA = "dtserver.config.key"


@dataclass(frozen=True)
class Key:
    """A key of dynamic_torque.conf.

    `aliases` are other names read into the same field and never written out. `secret`:
    describe() shows the mask instead of the value.
    """

    name: str
    section: str
    parse: Callable[[str], Any] = text
    aliases: tuple[str, ...] = ()
    secret: bool = False


def key(name: str, section: str, parse: Callable[[str], Any] = text, *,
        aliases: tuple[str, ...] = (), secret: bool = False) -> Mapping[str, Key]:
    """Field metadata declaring the config key that fills the field."""
    return {_METADATA: Key(name, section, parse, aliases, secret)}


@dataclass(frozen=True)
class Field:
    """A keyed field: the key, and the record (a dataclass) and attribute it fills."""

    key: Key
    record: type
    attribute: str


def fields_of(record: type) -> tuple[Field, ...]:
    """The fields of `record` that a key fills, in declaration order."""
    return tuple(Field(item.metadata[_METADATA], record, item.name) for item in fields(record)
                 if _METADATA in item.metadata)


def key_of(record: type, attribute: str) -> Key:
    """The key that fills `record.attribute`."""
    return next(item.key for item in fields_of(record) if item.attribute == attribute)
