"""The one result type of every step of plan() (dtserver/planning/__init__.py)."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from dtserver.actions import Action, JobVerdict


@dataclass(frozen=True)
class StepResult:
    """What one step decided. `claimed` names the nodes (by hostname) the step decided
    on; plan() hands them to the later steps that must leave those nodes alone."""

    actions: tuple[Action, ...] = ()
    notes: tuple[str, ...] = ()
    claimed: frozenset[str] = frozenset()
    # When a time-based rule of the step falls due if nothing else changes.
    next_due: datetime | None = None
    verdicts: tuple[JobVerdict, ...] = ()
