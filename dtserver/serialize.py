"""Model values to JSON-ready data, the same way for the API, the store and the CLI."""
from __future__ import annotations

import dataclasses
import enum
import functools
import types
import typing
from datetime import datetime, timedelta, timezone
from typing import Any, Mapping, Protocol

from dtserver.actions import Action, JobVerdict, VerdictStatus


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


def parse_time(text: str) -> datetime:
    """The inverse of format_time."""
    return datetime.fromisoformat(text).astimezone(timezone.utc)


class ShownPlan(Protocol):
    """What the API shows of a plan: a Plan, or the store's StoredPlan."""

    @property
    def actions(self) -> tuple[Action, ...]: ...

    @property
    def verdicts(self) -> tuple[JobVerdict, ...]: ...

    @property
    def notes(self) -> tuple[str, ...]: ...


def plan_as_data(plan: ShownPlan) -> dict[str, Any]:
    """A plan as JSON data; each action carries its type name."""
    return {
        "actions": [{"type": type(action).__name__, **to_jsonable(action)}
                    for action in plan.actions],
        "verdicts": to_jsonable(plan.verdicts),
        "notes": list(plan.notes),
    }


_ACTIONS: dict[str, type] = {kind.__name__: kind for kind in typing.get_args(Action)}


def actions_from_data(items: list[Mapping[str, Any]]) -> tuple[Action, ...]:
    """The inverse of the "actions" of plan_as_data."""
    return tuple(_value_from_data(_ACTIONS[item["type"]],
                                  {key: value for key, value in item.items() if key != "type"})
                 for item in items)


def verdicts_from_data(items: list[Mapping[str, Any]]) -> tuple[JobVerdict, ...]:
    """The inverse of the "verdicts" of plan_as_data; by hand, not by _value_from_data: a
    deep queue has a hundred thousand of them and the API reads them at every request."""
    return tuple(JobVerdict(item["job_id"], VerdictStatus(item["status"]), item["reason"],
                            item["pool"], item["cores"], tuple(item["hosts"]))
                 for item in items)


def _value_from_data(kind: Any, data: Any) -> Any:
    """The inverse of to_jsonable for the types actions are made of."""
    if data is None:
        return None
    origin = typing.get_origin(kind)
    if origin is types.UnionType or origin is typing.Union:
        (kind,) = [arg for arg in typing.get_args(kind) if arg is not type(None)]
        return _value_from_data(kind, data)
    if origin is frozenset or origin is tuple:
        item = typing.get_args(kind)[0]
        return origin(_value_from_data(item, element) for element in data)
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        return kind(data)
    if kind is datetime:
        return parse_time(data)
    if dataclasses.is_dataclass(kind):
        hints = _field_types(kind)
        return kind(**{name: _value_from_data(hints[name], value)
                       for name, value in data.items()})
    return data


@functools.cache
def _field_types(kind: type) -> dict[str, Any]:
    return typing.get_type_hints(kind)
