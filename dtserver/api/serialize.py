"""JSON for the API: model values encoded by dtserver.serialize, the one encoder."""
from __future__ import annotations

from typing import Any

from flask.json.provider import DefaultJSONProvider

from dtserver.serialize import format_time, to_jsonable

__all__ = ["ModelJSONProvider", "format_time", "to_jsonable"]


class ModelJSONProvider(DefaultJSONProvider):
    """Lets views return model values (records, events, plans) directly."""

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        return super().dumps(to_jsonable(obj), **kwargs)
