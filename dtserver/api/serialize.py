"""Model values to JSON-ready data, the same way for every endpoint."""
from __future__ import annotations

import dataclasses
import enum
from datetime import datetime, timedelta, timezone
from typing import Any, Mapping

from flask.json.provider import DefaultJSONProvider


def format_time(value: datetime) -> str:
    """ISO-8601 in UTC with a Z suffix: 2026-01-02T03:04:05Z."""
    if value.tzinfo is None:
        # Every datetime in the model is aware UTC; a naive one is a bug upstream.
        raise ValueError(f"naive datetime {value!r} cannot be serialized")
    return value.astimezone(timezone.utc).replace(tzinfo=None).isoformat() + "Z"


def to_jsonable(value: Any) -> Any:
    """Dataclasses to objects, enums to their values, datetimes to ISO-8601 Z,
    timedeltas to seconds, sets to sorted lists. Anything else unknown is a TypeError."""
    # Enum before str: StrEnum members are str too, but JSON gets the plain value.
    if isinstance(value, enum.Enum):
        return to_jsonable(value.value)
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, datetime):
        return format_time(value)
    if isinstance(value, timedelta):
        return value.total_seconds()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {field.name: to_jsonable(getattr(value, field.name))
                for field in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(to_jsonable(key)): to_jsonable(item) for key, item in value.items()}
    if isinstance(value, (set, frozenset)):
        return sorted((to_jsonable(item) for item in value), key=str)
    if isinstance(value, (list, tuple)):
        return [to_jsonable(item) for item in value]
    raise TypeError(f"cannot serialize {type(value).__name__} to JSON")


class ModelJSONProvider(DefaultJSONProvider):
    """Lets views return model values (records, events, plans) directly."""

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        return super().dumps(to_jsonable(obj), **kwargs)
