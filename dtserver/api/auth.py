"""Bearer tokens: the admin token guards mutations, the optional hint token guards hints.

Tokens are read once at start; rotating one means restarting the API.
"""
from __future__ import annotations

import functools
import hmac
import logging
import stat
from pathlib import Path
from typing import Callable, ParamSpec, TypeVar

from flask import request

from dtserver.api.context import api_context
from dtserver.api.errors import ApiError
from dtserver.api.settings import ApiConfigError

log = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")

_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="dynamictorque"'}
# The admin token guards every mutation and is tried over the network: 32 characters of
# `openssl rand -hex 32` (64 hex digits) leave nothing to guess.
MIN_ADMIN_TOKEN_LENGTH = 32


def read_token_file(path: Path, *, private: bool) -> str:
    """The token in `path`, surrounding whitespace removed.

    A private (admin) file must have no group or other permission bits at all and hold at
    least MIN_ADMIN_TOKEN_LENGTH characters; a shared (hint) file may be readable by users
    but must not be writable by them.
    """
    try:
        mode = path.stat().st_mode
        token = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as error:
        raise ApiConfigError(f"cannot read token file {path}: {error}") from error
    forbidden = stat.S_IRWXG | stat.S_IRWXO if private else stat.S_IWGRP | stat.S_IWOTH
    if mode & forbidden:
        what = "readable or writable by group/others" if private else "writable by group/others"
        raise ApiConfigError(
            f"token file {path} is {what} (mode {stat.S_IMODE(mode):04o}); "
            f"chmod {'600' if private else '644'} it")
    if not token:
        raise ApiConfigError(f"token file {path} is empty")
    if private and len(token) < MIN_ADMIN_TOKEN_LENGTH:
        raise ApiConfigError(
            f"token file {path} holds {len(token)} characters; the admin token needs at least "
            f"{MIN_ADMIN_TOKEN_LENGTH}: generate one with `openssl rand -hex 32 > {path}`")
    return token


def _presented_token() -> str | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def _matches(presented: str, expected: str | None) -> bool:
    # Bytes, because compare_digest refuses non-ASCII str and headers may hold anything.
    return expected is not None and hmac.compare_digest(
        presented.encode("utf-8"), expected.encode("utf-8"))


def _refuse(presented: str | None) -> ApiError:
    problem = "missing" if presented is None else "invalid"
    log.warning("auth refused path=%s remote=%s token=%s", request.path, request.remote_addr,
                problem)
    return ApiError(401, "unauthorized", f"{problem} bearer token", _CHALLENGE)


def check_admin_token() -> None:
    """Raise ApiError unless the request carries the admin token."""
    context = api_context()
    if context.admin_token is None:
        raise ApiError(403, "admin_disabled",
                       "no admin token is configured (DT_TOKEN_FILE); mutations are disabled")
    presented = _presented_token()
    if presented is None or not _matches(presented, context.admin_token):
        raise _refuse(presented)


def check_hint_token() -> None:
    """Hints need the hint token (or the admin token) only when a hint token is configured."""
    context = api_context()
    if context.hint_token is None:
        return
    presented = _presented_token()
    if presented is None or not (_matches(presented, context.hint_token)
                                 or _matches(presented, context.admin_token)):
        raise _refuse(presented)


def admin_required(view: Callable[P, R]) -> Callable[P, R]:
    @functools.wraps(view)
    def guarded(*args: P.args, **kwargs: P.kwargs) -> R:
        check_admin_token()
        return view(*args, **kwargs)

    return guarded
