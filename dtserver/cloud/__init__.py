"""The Cloud port: the few Nova operations the reconciler needs.

Implementations: `NovaCloud` (nova.py) over a python-novaclient client, which is either a
real one on a keystoneauth1 session or `FakeNova` (dtserver/fakes/nova.py), which has the
same shape.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from dtserver.model import DtError, ErrorKind, Flavor, Instance, InstanceSpec, Quota


class CloudError(DtError):
    """A cloud call failed; `kind` decides the backoff."""

    def __init__(self, kind: ErrorKind, message: str, *, status: int | None = None) -> None:
        self.kind = kind
        self.status = status
        super().__init__(message)


@dataclass(frozen=True)
class ForeignInstance:
    """An instance wearing our cluster id that is not ours: another installation made it
    in the same project with the same cluster_id, or (installation None) an older release
    made it and none of our records names it. Never deleted, adopted or counted."""

    id: str
    name: str
    installation: str | None


class Cloud(Protocol):
    def flavors(self) -> tuple[Flavor, ...]:
        """Every flavor visible to the project, with cores and memory."""

    def create_instance(self, spec: InstanceSpec) -> Instance:
        """servers.create with ownership metadata (cluster id and installation id) and
        tags; returns at once (BUILD)."""

    def owned_instances(self) -> tuple[Instance, ...]:
        """This installation's instances, and only those: the cluster id narrows the list,
        the installation id decides (see ForeignInstance). Raises CloudError."""

    def delete_instance(self, instance_id: str) -> None:
        """Idempotent: an instance already gone is success. Refuses (CloudError) an
        instance that owned_instances would not list."""

    def mark_entry_ready(self, instance_id: str) -> None:
        """Set the instance's ENTRY_READY_KEY metadata: its TORQUE node entry is usable, so
        its user-data may start pbs_mom. Idempotent."""

    def quota(self) -> Quota:
        """What the project can still launch."""
