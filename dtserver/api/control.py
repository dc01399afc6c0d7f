"""Admin control: sleep mode and the last plan. Mutations need the admin token."""
from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint

from dtserver.api.auth import admin_required
from dtserver.api.context import api_context
from dtserver.api.wakeup import wake_reconciler

log = logging.getLogger(__name__)

bp = Blueprint("control", __name__)


def _set_sleeping(sleeping: bool) -> dict[str, bool]:
    context = api_context()
    now = context.clock.now()
    context.store.set_sleeping(sleeping, now)
    context.store.add_event(now, "sleep" if sleeping else "wake",
                            "sleep mode on: no new launches" if sleeping else "sleep mode off")
    log.info("sleep mode changed sleeping=%s", sleeping)
    # Waking may release launches that waited; no reason to wait for the next poll.
    wake_reconciler(context.settings.wakeup_path)
    return {"sleeping": sleeping}


@bp.post("/v1/sleep")
@admin_required
def sleep() -> dict[str, bool]:
    return _set_sleeping(True)


@bp.post("/v1/wake")
@admin_required
def wake() -> dict[str, bool]:
    return _set_sleeping(False)


@bp.get("/v1/plan")
def last_plan() -> dict[str, Any]:
    """The plan of the last reconciler pass; nulls before the first one."""
    stored = api_context().store.last_plan()
    if stored is None:
        return {"time": None, "plan": None}
    time, plan = stored
    return {"time": time, "plan": plan}
