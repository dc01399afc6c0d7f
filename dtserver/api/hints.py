"""POST /v1/hints: demand announced by the submit filter before qsub has a job id.

The body is validated here (shape, sizes, characters, and the request grammar through
nodespec, the one parser) and stored as posted; the reconciler parses it again when it
plans. The answer says whether any pool could ever run the job, judged by the planner's
own eligibility rules against the pool catalogue the reconciler published; a job no pool
can run is not stored. Nothing here talks to TORQUE or Nova.
"""
from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, Response, jsonify, request

from dtserver import nodespec
from dtserver.api.auth import check_hint_token
from dtserver.api.context import api_context
from dtserver.api.errors import ApiError
from dtserver.api.operation import HINT, JSON, Operation, ref
from dtserver.model import Request
from dtserver.planning.eligibility import eligible_pools
from dtserver.store import HintLimitReached, PoolCatalogue
from dtserver.wakeup import wake_reconciler

log = logging.getLogger(__name__)

bp = Blueprint("hints", __name__)

# POSIX portable user names (useradd's rule), with the trailing $ of machine accounts.
_USER = re.compile(r"[A-Za-z0-9_.][A-Za-z0-9_.-]*\$?")
# queue[@server[:port]], as qsub -q accepts it.
_QUEUE = re.compile(r"[A-Za-z0-9_.-]+(@[A-Za-z0-9_.-]+(:[0-9]+)?)?")
_HOST = re.compile(r"[A-Za-z0-9_.:-]+")
# Tab is allowed ("#PBS\t-l ..."); other control characters never belong in these fields.
_CONTROL_CHARS = r"\x00-\x08\x0a-\x1f\x7f"
_CONTROL = re.compile(f"[{_CONTROL_CHARS}]")

_SHOWN_CHARS = 40


@dataclass(frozen=True)
class _Text:
    max_chars: int
    pattern: re.Pattern[str] | None = None
    required: bool = False            # required text fields are never null


@dataclass(frozen=True)
class _TextList:
    max_items: int
    max_chars: int


_TEXT_FIELDS = {
    "user": _Text(64, _USER, required=True),
    "queue": _Text(255, _QUEUE),
    "account": _Text(255),
    "array": _Text(1024),
    "submit_host": _Text(255, _HOST),
    "job_name": _Text(255),
}
# Optional; absent means an empty list.
_LIST_FIELDS = {
    "resources": _TextList(max_items=64, max_chars=1024),
    "directives": _TextList(max_items=256, max_chars=1024),
}
_FIELDS = frozenset(_TEXT_FIELDS) | frozenset(_LIST_FIELDS)


# A valid hint, as the filter sends it; /v1/openapi.json shows it and tests post it.
HINT_EXAMPLE: dict[str, Any] = {
    "user": "alice",
    "queue": "batch",
    "account": "physics",
    "resources": ["walltime=01:00:00", "nodes=2:ppn=4"],
    "directives": ["#PBS -N sim", "#PBS -l walltime=01:00:00"],
    "array": "1-10%2",
    "submit_host": "login1.example.org",
    "job_name": "sim",
}


# The three kinds of answer of POST /v1/hints, shown in /v1/openapi.json.
ANSWER_EXAMPLES: dict[str, dict[str, Any]] = {
    "servable": {"summary": "A pool can run the job; the hint is stored",
                 "value": {"id": 42, "servable": True}},
    "unservable": {"summary": "No pool can ever run the job; the hint is not stored",
                   "value": {"id": None, "servable": False,
                             "reason": "a node of 16 cores/0 MiB/0 GPUs is larger than any "
                                       "flavor (largest m1.large: 8 cores/16384 MiB/0 GPUs)"}},
    "unknown": {"summary": "Not ours to judge (no catalogue yet, a queue no pool serves, "
                           "the server's default queue, a host name); the hint is stored",
                "value": {"id": 43, "servable": None}},
}


def answer_schema() -> dict[str, Any]:
    """The JSON Schema of a 202 answer: stored with a verdict of true or null, or not
    stored (id null) with false and a reason."""
    stored = {"type": "object", "additionalProperties": False, "required": ["id", "servable"],
              "properties": {"id": {"type": "integer"},
                             "servable": {"enum": [True, None]}}}
    refused = {"type": "object", "additionalProperties": False,
               "required": ["id", "servable", "reason"],
               "properties": {"id": {"type": "null"}, "servable": {"const": False},
                              "reason": {"type": "string", "minLength": 1}}}
    return {"oneOf": [stored, refused]}


@dataclass(frozen=True)
class Verdict:
    servable: bool | None     # None: unknown, never a reason to refuse a job
    reason: str = ""          # why not, when servable is False


def judge(payload: dict[str, Any], request: Request,
          catalogue: PoolCatalogue | None) -> Verdict:
    """Could any pool ever run this job? False only when the job is sure to come to a
    queue dynamictorque serves and no pool could take it, whatever capacity is free.

    Unknown when there is no catalogue or no pool, when the queue is one no pool serves
    (static nodes may run it), when no queue is named while some pool or the monitored
    list depends on the queue (qsub's default queue is not known here), and for a job
    pinned to a host.
    """
    if catalogue is None or not catalogue.pools:
        return Verdict(None)
    queue = (payload.get("queue") or "").partition("@")[0] or None
    pool_queues = [pool.queues for pool in catalogue.pools]
    if queue is None:
        if catalogue.queues or any(pool_queues):
            return Verdict(None)
    elif catalogue.queues and queue not in catalogue.queues:
        return Verdict(None)
    elif all(pool_queues) and not any(queue in queues for queues in pool_queues):
        return Verdict(None)
    if any(chunk.hostname for chunk in request.chunks):
        return Verdict(None)
    pools, why = eligible_pools(catalogue.pools, queue, payload.get("account"), request,
                                catalogue.max_cores)
    return Verdict(True) if pools else Verdict(False, why)


def _anchored(pattern: re.Pattern[str]) -> str:
    # JSON Schema patterns are unanchored ECMA-262 searches; ours are fullmatch()ed.
    return f"^(?:{pattern.pattern})$"


def hint_schema() -> dict[str, Any]:
    """The JSON Schema (2020-12) of a hint body, built from the rules validate_hint applies,
    so the OpenAPI document cannot drift from the validator. The request grammar of
    `resources` and `array` (nodespec) is checked on top of it and answered
    invalid_resources / invalid_array."""
    no_control = f"^[^{_CONTROL_CHARS}]*$"
    properties: dict[str, Any] = {}
    for name, rule in _TEXT_FIELDS.items():
        properties[name] = {"type": "string" if rule.required else ["string", "null"],
                            "maxLength": rule.max_chars,
                            "pattern": _anchored(rule.pattern) if rule.pattern else no_control}
    for name, items in _LIST_FIELDS.items():
        properties[name] = {"type": "array", "maxItems": items.max_items,
                            "items": {"type": "string", "maxLength": items.max_chars,
                                      "pattern": no_control}}
    required = [name for name, rule in _TEXT_FIELDS.items() if rule.required]
    return {"type": "object", "properties": properties, "required": required,
            "additionalProperties": False}


def _shown(text: str) -> str:
    """Echo user input in messages, but never 60 KiB of it."""
    return repr(text if len(text) <= _SHOWN_CHARS else text[:_SHOWN_CHARS] + "...")


def _invalid(code: str, message: str) -> ApiError:
    return ApiError(400, code, message)


class _DuplicateKey(ValueError):
    pass


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # A repeated key is ambiguous: which one would we have stored "as posted"?
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKey(f"duplicate key {_shown(key)}")
        result[key] = value
    return result


def _read_json_object() -> dict[str, Any]:
    if not request.is_json:
        raise ApiError(415, "unsupported_media_type", "send the hint as application/json")
    body = request.get_data(cache=False)        # raises 413 beyond MAX_CONTENT_LENGTH
    try:
        payload = json.loads(body, object_pairs_hook=_reject_duplicates)
    except _DuplicateKey as error:
        raise _invalid("invalid_json", str(error)) from error
    # ValueError covers bad JSON, bad UTF-8 and oversized integers.
    except (ValueError, RecursionError) as error:
        raise _invalid("invalid_json", f"body is not valid JSON: {error}") from error
    if not isinstance(payload, dict):
        raise _invalid("invalid_type", "the hint must be a JSON object")
    return payload


def _check_text(name: str, value: str, max_chars: int, pattern: re.Pattern[str] | None) -> None:
    if len(value) > max_chars:
        raise _invalid("invalid_value", f"{name}: longer than {max_chars} characters")
    if pattern is not None and not pattern.fullmatch(value):
        raise _invalid("invalid_value", f"{name}: {_shown(value)} is empty or has characters not allowed here")
    if _CONTROL.search(value):
        raise _invalid("invalid_value", f"{name}: control characters are not allowed")


def validate_hint(payload: dict[str, Any]) -> Request:
    """The request of a hint payload; ApiError (400) for the first problem found."""
    unknown = sorted(set(payload) - _FIELDS)
    if unknown:
        raise _invalid("unknown_field",
                       f"unknown field(s): {', '.join(_shown(name) for name in unknown[:5])}")
    for name, rule in _TEXT_FIELDS.items():
        value = payload.get(name)
        if value is None:
            if rule.required:
                raise _invalid("missing_field", f"{name}: required")
            continue
        if not isinstance(value, str):
            expected = "a string" if rule.required else "a string or null"
            raise _invalid("invalid_type", f"{name}: must be {expected}")
        _check_text(name, value, rule.max_chars, rule.pattern)
    for name, rule in _LIST_FIELDS.items():
        items = payload.get(name, [])
        if not isinstance(items, list) or not all(isinstance(item, str) for item in items):
            raise _invalid("invalid_type", f"{name}: must be a list of strings")
        if len(items) > rule.max_items:
            raise _invalid("invalid_value", f"{name}: more than {rule.max_items} items")
        for index, item in enumerate(items):
            _check_text(f"{name}[{index}]", item, rule.max_chars, None)
    array = payload.get("array")
    if array is not None:
        try:
            nodespec.parse_array_spec(array)
        except nodespec.RequestError as error:
            raise _invalid("invalid_array", str(error)) from error
    try:
        return nodespec.parse_resource_list(
            nodespec.parse_qsub_resources(payload.get("resources", [])), array=array)
    except nodespec.RequestError as error:
        raise _invalid("invalid_resources", str(error)) from error


@bp.post("/v1/hints")
@Operation("Announce a job before qsub has a job id (the submit filter); the answer says "
           "whether any pool could ever run it", 202, {JSON: ref("HintAccepted")},
           errors=(400, 401, 413, 415, 429, 503), access=HINT, body=ref("Hint"),
           body_example=HINT_EXAMPLE, ok_examples=ANSWER_EXAMPLES)
def post_hint() -> tuple[Response, int]:
    """Store the hint and say whether any pool could ever run the job (`servable`).

    An unservable job (false, with a `reason`) is not stored: it is no demand. The submit
    filter refuses it when its config says `reject_unservable = yes`."""
    check_hint_token()
    payload = _read_json_object()
    try:
        job_request = validate_hint(payload)
    except ApiError as error:
        log.info("hint rejected code=%s message=%s remote=%s", error.code, error.message,
                 request.remote_addr)
        raise
    context = api_context()
    published = context.store.pool_catalogue()
    verdict = judge(payload, job_request, published[1] if published else None)
    if verdict.servable is False:
        log.info("hint unservable user=%s queue=%s reason=%s", payload["user"],
                 payload.get("queue"), verdict.reason)
        return jsonify({"id": None, "servable": False, "reason": verdict.reason}), 202
    try:
        hint_id = context.store.add_hint(context.clock.now(), payload,
                                         source=request.remote_addr,
                                         limits=context.settings.hint_limits)
    except HintLimitReached as error:
        log.info("hint refused user=%s remote=%s reason=%s", payload["user"],
                 request.remote_addr, error)
        raise ApiError(429, "too_many_hints", f"{error}; retry later",
                       {"Retry-After": str(context.settings.hint_retry_seconds)}) from error
    wake_reconciler(context.settings.wakeup_path)
    log.debug("hint stored id=%d user=%s queue=%s servable=%s", hint_id, payload["user"],
              payload.get("queue"), verdict.servable)
    return jsonify({"id": hint_id, "servable": verdict.servable}), 202
