"""Small value factories for the API tests."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from dtserver.model import NodeRecord, NodeState

T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)


def record(hostname: str = "cloud-001", *, pool: str = "cloud", state: NodeState = NodeState.IDLE,
           cores: int = 4, record_id: str | None = None, since: datetime = T0,
           **fields: Any) -> NodeRecord:
    return NodeRecord(id=record_id or f"rec-{hostname}", hostname=hostname, pool=pool,
                      flavor="m1.large", cores=cores, state=state, created=T0, state_since=since,
                      **fields)


def hint(**fields: Any) -> dict[str, Any]:
    """A valid hint body; keyword arguments replace or add fields."""
    body: dict[str, Any] = {
        "user": "alice",
        "queue": "batch",
        "account": None,
        "resources": ["nodes=2:ppn=4,walltime=01:00:00"],
        "directives": ["#PBS -l nodes=2:ppn=4"],
        "array": None,
        "submit_host": "login1.example.org",
        "job_name": "sim",
    }
    body.update(fields)
    return body
