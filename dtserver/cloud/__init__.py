"""The Cloud port: the few Nova operations the reconciler needs.

Implementations: `NovaCloud` (nova.py) over a python-novaclient client, which is either a
real one on a keystoneauth1 session or `FakeNova` (fake_nova.py), which has the same shape.
"""
from __future__ import annotations

from typing import Protocol

from dtserver.model import DtError, ErrorKind, Flavor, Instance, InstanceSpec, Quota


class CloudError(DtError):
    """A cloud call failed; `kind` decides the backoff."""

    def __init__(self, kind: ErrorKind, message: str, *, status: int | None = None) -> None:
        self.kind = kind
        self.status = status
        super().__init__(message)


class Cloud(Protocol):
    def flavors(self) -> tuple[Flavor, ...]:
        """Every flavor visible to the project, with cores and memory."""

    def create_instance(self, spec: InstanceSpec) -> Instance:
        """servers.create with ownership metadata and tags; returns at once (BUILD)."""

    def owned_instances(self) -> tuple[Instance, ...]:
        """Instances carrying this cluster's ownership metadata. Raises CloudError."""

    def delete_instance(self, instance_id: str) -> None:
        """Idempotent: an instance already gone is success."""

    def mark_entry_ready(self, instance_id: str) -> None:
        """Set the instance's ENTRY_READY_KEY metadata: its TORQUE node entry is usable, so
        its user-data may start pbs_mom. Idempotent."""

    def quota(self) -> Quota:
        """What the project can still launch."""
