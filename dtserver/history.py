"""What the reconciler remembers between passes for demand-following idle time: the jobs
that arrived lately and how long recent boots took (model.RecentDemand)."""
from __future__ import annotations

import bisect
from datetime import datetime, timedelta
from typing import Iterable

from dtserver.model import Job, NodeRecord, NodeState, RecentDemand

# Bounds on what one process remembers; past them the oldest goes, and the history then
# claims to know only what it kept.
MAX_ARRIVALS = 200_000
MAX_BOOTS = 20

_BOOTING = (NodeState.LAUNCHING, NodeState.BOOTING, NodeState.REGISTERED)
_READY = (NodeState.IDLE, NodeState.BUSY)


def _ctime(job: Job) -> datetime:
    return job.created


class DemandHistory:
    """Arrivals by ctime, each job once, and the boots this process watched from start to
    ready. It knows nothing before it started, nor across a pass that could not read
    TORQUE (arrivals may have come and gone unseen): both restart it."""

    def __init__(self, started: datetime) -> None:
        self._since = started
        self._arrivals: list[Job] = []
        self._known: set[str] = set()
        self._booting: set[str] = set()
        self._boots: list[float] = []
        self._view: RecentDemand | None = None

    def observe(self, jobs: Iterable[Job] | None, records: Iterable[NodeRecord],
                now: datetime, keep: timedelta) -> RecentDemand:
        """Take in one pass's jobs (None: unreadable) and records; remember arrivals for
        `keep`."""
        changed = self._watch_boots(records)
        if jobs is None:
            self._since, self._arrivals, self._known = now, [], set()
            changed = True
        else:
            for job in jobs:
                if job.id not in self._known and job.created >= now - keep:
                    self._known.add(job.id)
                    bisect.insort(self._arrivals, job, key=_ctime)
                    changed = True
        changed = self._forget(now - keep) or changed
        if changed or self._view is None:
            self._view = RecentDemand(self._since, tuple(self._arrivals), tuple(self._boots))
        return self._view

    def _watch_boots(self, records: Iterable[NodeRecord]) -> bool:
        changed = False
        present = set()
        for record in records:
            present.add(record.id)
            if record.state in _BOOTING:
                self._booting.add(record.id)
            elif record.id in self._booting and record.state in _READY:
                self._booting.discard(record.id)
                self._boots = (self._boots + [
                    (record.state_since - record.created).total_seconds()])[-MAX_BOOTS:]
                changed = True
        self._booting &= present
        return changed

    def _forget(self, before: datetime) -> bool:
        cut = bisect.bisect_left(self._arrivals, before, key=_ctime)
        if len(self._arrivals) - cut > MAX_ARRIVALS:
            cut = len(self._arrivals) - MAX_ARRIVALS
            self._since = max(self._since, self._arrivals[cut].created)
        if not cut:
            return False
        for job in self._arrivals[:cut]:
            self._known.discard(job.id)
        del self._arrivals[:cut]
        return True
