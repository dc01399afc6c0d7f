"""GET /v1/jobs/<id>/why: the planner's verdict on a queued job in the last pass.

The verdicts are the reconciler's last plan (dtserver.store.StoredPlan), so the
answer is as fresh as that pass. A job id may be given without its server suffix ("12"
for "12.vm") when that is unambiguous, and an array as "14[]" for all its subjobs.
"""
from __future__ import annotations

from typing import Any, Sequence

from flask import Blueprint

from dtserver.actions import JobVerdict
from dtserver.api.context import api_context
from dtserver.api.errors import ApiError
from dtserver.api.operation import JSON, TIME, Operation, closed_object
from dtserver.api.serialize import format_time

bp = Blueprint("jobs", __name__)

_MAX_JOB_ID_CHARS = 255


def _number(job_id: str) -> str:
    """"14[2].vm" -> "14[2]": the id without the server suffix."""
    return job_id.split(".", 1)[0]


def matching_verdicts(verdicts: Sequence[JobVerdict], job_id: str) -> list[JobVerdict]:
    """The verdicts `job_id` names: the exact id; else, given without a suffix, the one
    job with that number; "N[]" names every subjob of array N."""
    exact = [verdict for verdict in verdicts if verdict.job_id == job_id]
    if exact:
        return exact
    number = _number(job_id)
    if number.endswith("[]"):
        parent = number[:-1]
        suffix = job_id[len(number):]
        return [verdict for verdict in verdicts
                if verdict.job_id.startswith(parent)
                and (not suffix or verdict.job_id.endswith(suffix))]
    if "." not in job_id:
        return [verdict for verdict in verdicts if _number(verdict.job_id) == number]
    return []


@bp.get("/v1/jobs/<job_id>/why")
@Operation("The planner's verdict on a queued job in the last pass", 200,
           {JSON: closed_object({"job_id": {"type": "string"}, "time": TIME,
                                 "verdicts": {"type": "array", "items": {"type": "object"}}})},
           errors=(400, 404, 503))
def why(job_id: str) -> dict[str, Any]:
    """{job_id, time, verdicts: [{job_id, status, reason, pool}]}; 404 when no plan is
    recorded yet or the job has no verdict (not queued, or not seen in the last pass)."""
    if len(job_id) > _MAX_JOB_ID_CHARS:
        raise ApiError(400, "invalid_value", "job id too long")
    stored = api_context().store.last_plan()
    if stored is None:
        raise ApiError(404, "no_plan", "no plan recorded yet: the reconciler has not "
                                       "finished a pass, so no job has a verdict")
    found = matching_verdicts(stored.verdicts, job_id)
    if not found:
        raise ApiError(404, "not_found",
                       f"job {job_id} is not queued / not seen in the last pass (at "
                       f"{format_time(stored.time)}): only queued, held or waiting jobs get a "
                       "verdict; a running or finished job, or one TORQUE has not shown "
                       "yet, has none")
    return {"job_id": job_id, "time": stored.time, "verdicts": found}
