"""Model values to JSON: ISO-8601 Z times, enum values, sorted sets."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from dtserver.api.serialize import format_time, to_jsonable
from dtserver.model import Chunk, NodeState, Request
from tests.api.builders import T0


def test_aware_times_become_utc_iso_with_z() -> None:
    plus_two = datetime(2026, 1, 2, 5, 4, 5, 250000, tzinfo=timezone(timedelta(hours=2)))

    assert format_time(T0) == "2026-01-02T03:04:05Z"
    assert format_time(plus_two) == "2026-01-02T03:04:05.250000Z"


def test_naive_time_is_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        format_time(datetime(2026, 1, 2))


def test_nested_model_values_become_plain_json() -> None:
    request = Request(chunks=(Chunk(count=2, cores=4, properties=frozenset({"b", "a"})),),
                      walltime_seconds=3600)

    assert to_jsonable({NodeState.IDLE: [request, timedelta(minutes=1)]}) == {
        "idle": [{"chunks": [{"count": 2, "cores": 4, "mem_mb": 0, "gpus": 0,
                              "properties": ["a", "b"], "hostname": None, "distinct": True}],
                  "walltime_seconds": 3600, "array": None},
                 60.0]}


def test_enum_becomes_its_plain_value() -> None:
    value = to_jsonable(NodeState.BUSY)

    assert value == "busy"
    assert type(value) is str


def test_unknown_type_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="object"):
        to_jsonable(object())
