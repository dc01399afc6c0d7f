"""What every view needs (store, clock, settings, tokens), attached to the app once."""
from __future__ import annotations

from dataclasses import dataclass

from flask import Flask, current_app

from dtserver.api.settings import ApiSettings
from dtserver.clock import Clock
from dtserver.store import Store

_EXTENSION = "dynamictorque"


@dataclass(frozen=True)
class ApiContext:
    settings: ApiSettings
    store: Store
    clock: Clock
    admin_token: str | None
    hint_token: str | None


def attach_context(app: Flask, context: ApiContext) -> None:
    app.extensions[_EXTENSION] = context


def api_context() -> ApiContext:
    """The context of the app handling the current request."""
    context: ApiContext = current_app.extensions[_EXTENSION]
    return context
