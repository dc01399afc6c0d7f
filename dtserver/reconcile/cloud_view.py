"""The cloud as the reconciler's passes see it: the last read, and one call at a time."""
from __future__ import annotations

import threading
from dataclasses import dataclass, replace

from dtserver.cloud import Cloud
from dtserver.model import Flavor, Instance, InstanceSpec, Quota


@dataclass(frozen=True)
class CloudView:
    """The last read of the cloud, and the instances this reconciler created since. A pass
    woken by news plans from it instead of listing every server again: a list costs 0.2 to
    0.5 s, and new demand must not wait for it. Between reads only our creates change what
    the plan relies on, and each is added here, so no record's instance looks gone."""

    instances: tuple[Instance, ...]
    quota: Quota
    read_at: float                   # time.monotonic()

    def with_created(self, instance: Instance, flavor: Flavor | None) -> CloudView:
        quota = self.quota
        if flavor is not None:
            quota = Quota(cores=_less(quota.cores, flavor.cores),
                          instances=_less(quota.instances, 1),
                          ram_mb=_less(quota.ram_mb, flavor.mem_mb))
        return replace(self, instances=self.instances + (instance,), quota=quota)


def _less(free: int | None, used: int) -> int | None:
    return None if free is None else max(0, free - used)


class LockedCloud:
    """The Cloud port, one call at a time: background steps share it with the pass."""

    def __init__(self, cloud: Cloud) -> None:
        self._cloud = cloud
        self._lock = threading.Lock()

    def flavors(self) -> tuple[Flavor, ...]:
        with self._lock:
            return self._cloud.flavors()

    def create_instance(self, spec: InstanceSpec) -> Instance:
        with self._lock:
            return self._cloud.create_instance(spec)

    def owned_instances(self) -> tuple[Instance, ...]:
        with self._lock:
            return self._cloud.owned_instances()

    def delete_instance(self, instance_id: str) -> None:
        with self._lock:
            self._cloud.delete_instance(instance_id)

    def mark_entry_ready(self, instance_id: str) -> None:
        with self._lock:
            self._cloud.mark_entry_ready(instance_id)

    def quota(self) -> Quota:
        with self._lock:
            return self._cloud.quota()
