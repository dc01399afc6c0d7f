"""The HTTP API: validates, records and answers. It never calls TORQUE or Nova.

Mutations are recorded in the store (hints, sleep flag) for the reconciler to act on.
Reads come from what the reconciler last stored.
"""
from __future__ import annotations

import logging

from flask import Flask, Response, jsonify, request

from dtserver.api import control, hints, jobs, metrics, nodes, openapi, status
from dtserver.api.auth import read_token_file
from dtserver.api.context import ApiContext, api_context, attach_context
from dtserver.api.errors import register_error_handlers
from dtserver.api.serialize import ModelJSONProvider
from dtserver.api.settings import ApiConfigError, ApiSettings
from dtserver.clock import Clock, SystemClock
from dtserver.store import Store, StoreError

log = logging.getLogger(__name__)


def create_app(settings: ApiSettings | None = None, *, store: Store,
               clock: Clock | None = None) -> Flask:
    """Build the app on `store`, which the composition root opens (dtserver/bootstrap.py,
    through dtserver/wsgi.py under gunicorn); raises ApiConfigError when a token file is
    unusable."""
    settings = settings or ApiSettings()
    for warning in settings.warnings:
        log.warning("%s", warning)
    admin_token = (read_token_file(settings.token_file, private=True)
                   if settings.token_file is not None else None)
    hint_token = (read_token_file(settings.hint_token_file, private=False)
                  if settings.hint_token_file is not None else None)
    if admin_token is not None and admin_token == hint_token:
        raise ApiConfigError("the hint token file holds the admin token; users can read it")
    if admin_token is None:
        log.warning("no admin token configured: admin mutations are disabled")

    app = Flask(__name__)
    app.json = ModelJSONProvider(app)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    attach_context(app, ApiContext(
        settings=settings,
        store=store,
        clock=clock or SystemClock(),
        admin_token=admin_token,
        hint_token=hint_token,
    ))
    register_error_handlers(app)
    app.before_request(_healthz_needs_the_store)
    # Every endpoint is in one of these blueprints: app.url_map lists them all.
    for blueprint in (hints.bp, status.bp, nodes.bp, control.bp, jobs.bp, metrics.bp, openapi.bp):
        app.register_blueprint(blueprint)
    return app


def _healthz_needs_the_store() -> tuple[Response, int] | None:
    """GET /healthz is red while the store is unusable, however recent the last pass: a
    deleted database file keeps answering reads from SQLite's open handle, but writes
    fail (503) and nothing the reconciler records reaches us any more."""
    if request.endpoint != "status.healthz":
        return None
    context = api_context()
    try:
        context.store.check()
    except StoreError as error:
        log.error("healthz: store unavailable error=%s", error)
        return jsonify({"status": "store_unavailable", "reason": str(error),
                        "limit_seconds": context.settings.healthz_stale_seconds}), 503
    return None
