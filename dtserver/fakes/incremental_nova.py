"""IncrementalNovaCloud: NovaCloud over a FakeNova that nobody else changes, for long
simulations (dtserver/sim/runner.py), where listing every server on every pass would cost
more than the plan.
"""
from __future__ import annotations

from datetime import datetime

from dtserver.cloud import CloudError
from dtserver.cloud.nova import NovaCloud
from dtserver.fakes.nova import FakeNova
from dtserver.model import Instance, InstanceSpec


class IncrementalNovaCloud(NovaCloud):
    """NovaCloud over FakeNova that re-reads only the servers that may have changed.

    Listing every server on every pass costs more than the whole plan once a simulated
    cluster holds hundreds of instances. A server changes only when we create or delete
    it, or when its boot or its deletion completes, at FakeNova's `next_event_at()`; so
    after the first listing, those servers are fetched one by one (`servers.get`) and
    read with NovaCloud's own conversion. Only for a FakeNova nobody else changes (the
    simulator: no injected faults, no foreign servers); any error falls back to a full
    listing, which raises as NovaCloud does."""

    def __init__(self, nova: FakeNova, *, cluster_id: str, installation: str) -> None:
        super().__init__(nova, cluster_id=cluster_id, installation=installation,
                         clock=nova.clock)
        self._nova = nova
        self._known: dict[str, Instance] | None = None   # creation order
        self._stale: set[str] = set()
        self._deleting: set[str] = set()
        self._due: datetime | None = None

    def create_instance(self, spec: InstanceSpec) -> Instance:
        instance = super().create_instance(spec)
        self._stale.add(instance.id)
        return instance

    def delete_instance(self, instance_id: str) -> None:
        try:
            super().delete_instance(instance_id)
        finally:
            self._stale.add(instance_id)
            self._deleting.add(instance_id)

    def mark_entry_ready(self, instance_id: str) -> None:
        try:
            super().mark_entry_ready(instance_id)
        finally:
            self._stale.add(instance_id)

    def owned_instances(self) -> tuple[Instance, ...]:
        known = self._known
        if known is None:
            return self._list_all()
        if self._due is not None and self._nova.clock.now() >= self._due:
            self._stale.update(instance.id for instance in known.values()
                               if instance.status == "BUILD" or instance.id in self._deleting)
        try:
            present = set(self._nova.server_ids()) if self._stale else set()
            for server_id in sorted(self._stale):
                self._read_again(known, server_id, present)
        except CloudError:
            return self._list_all()
        self._settle(known)
        # Nova lists the newest first.
        return tuple(reversed(known.values()))

    def _list_all(self) -> tuple[Instance, ...]:
        listed = super().owned_instances()
        self._known = {instance.id: instance for instance in reversed(listed)}
        self._settle(self._known)
        return listed

    def _settle(self, known: dict[str, Instance]) -> None:
        self._stale.clear()
        self._deleting &= known.keys()
        self._due = self._nova.next_event_at()

    def _read_again(self, known: dict[str, Instance], server_id: str,
                    present: set[str]) -> None:
        if server_id not in present:
            known.pop(server_id, None)      # deleted and gone: Nova would answer 404
            return
        server = self._call("servers.get", self._nova.servers.get, server_id)
        if self._owns(server):
            known[server_id] = self._instance(server)
        else:
            known.pop(server_id, None)
