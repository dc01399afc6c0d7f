"""The one place that turns failures into `{"error": {"code": ..., "message": ...}}`."""
from __future__ import annotations

import logging
import re
from typing import Mapping

from flask import Flask, Response, jsonify
from werkzeug.exceptions import HTTPException

from dtserver.model import DtError
from dtserver.store import StoreError

log = logging.getLogger(__name__)

_NOT_WORD = re.compile(r"[^a-z0-9]+")


class ApiError(DtError):
    """Raised by views for an expected failure: becomes a JSON error with `status`."""

    def __init__(self, status: int, code: str, message: str,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})


def error_response(status: int, code: str, message: str,
                   headers: Mapping[str, str] | None = None) -> Response:
    response = jsonify({"error": {"code": code, "message": message}})
    response.status_code = status
    response.headers.update(headers or {})
    return response


def _api_error(error: ApiError) -> Response:
    return error_response(error.status, error.code, error.message, error.headers)


def _http_error(error: HTTPException) -> Response:
    # "Method Not Allowed" -> "method_not_allowed"; Allow and similar headers are kept.
    code = _NOT_WORD.sub("_", (error.name or "error").lower()).strip("_")
    headers = {key: value for key, value in error.get_headers() if key != "Content-Type"}
    return error_response(error.code or 500, code, error.description or error.name, headers)


def _store_error(error: StoreError) -> Response:
    log.error("store unavailable error=%s", error)
    return error_response(503, "store_unavailable", "the state database is unavailable; retry")


def _unexpected_error(error: Exception) -> Response:
    log.exception("request failed error=%s", type(error).__name__)
    return error_response(500, "internal_error", "internal error; see the server log")


def register_error_handlers(app: Flask) -> None:
    """Flask picks the most specific handler by the exception's class hierarchy."""
    app.register_error_handler(ApiError, _api_error)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(StoreError, _store_error)
    app.register_error_handler(Exception, _unexpected_error)
