"""The composition root: the only module that picks concrete adapters.

`[torque] driver = torque | emulator` and `[cloud] driver = nova | fake` select real
TORQUE commands or the emulator, real Nova or FakeNova; the reconciler cannot tell.
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

from dtserver.batch import Batch
from dtserver.batch.hosts import HostsFile
from dtserver.batch.torque import TorqueBatch
from dtserver.batch.torque_commands import CommandResult, SubprocessRunner
from dtserver.batch.torque_emulator import TorqueEmulator
from dtserver.clock import Clock, SystemClock
from dtserver.cloud import Cloud, CloudError, ForeignInstance
from dtserver.cloud.fake_nova import FakeNova, FakeServer
from dtserver.cloud.nova import NovaCloud
from dtserver.config import Settings, build_policy
from dtserver.events import EventRunner
from dtserver.model import DtError, ErrorKind, Flavor, Quota, announces_entry
from dtserver.reconcile.loop import Reconciler
from dtserver.store import EventKind, RecordNotFound, Store, StoreError
from dtserver.store.sqlite import SqliteStore

log = logging.getLogger(__name__)

# FakeNova's flavors for the demo, the simulator and the fake driver.
DEMO_FLAVORS = (
    Flavor("m1.small", cores=2, mem_mb=4096, id="1"),
    Flavor("m1.medium", cores=4, mem_mb=8192, id="2"),
    Flavor("m1.large", cores=8, mem_mb=16384, id="3"),
)
DEMO_IMAGE = "155d900f-4e14-4e4c-a73d-069cbf4541e6"


class LockedRunner:
    """Serialises access to the in-process emulator shared by several threads."""

    def __init__(self, emulator: TorqueEmulator, lock: threading.RLock) -> None:
        self.emulator = emulator
        self.lock = lock

    def run(self, argv: Sequence[str], *, stdin: bytes | None = None,
            timeout: float | None = None) -> CommandResult:
        with self.lock:
            return self.emulator.run(argv, stdin=stdin, timeout=timeout)


@dataclass
class FakeWorld:
    """The emulated cluster: TORQUE and Nova on one clock, with each ACTIVE instance's
    pbs_mom reporting to the emulated server as a real worker's would after cloud-init."""

    clock: Clock
    emulator: TorqueEmulator
    nova: FakeNova
    lock: threading.RLock

    def runner(self) -> LockedRunner:
        return LockedRunner(self.emulator, self.lock)


def build_fake_world(clock: Clock, *, flavors: Sequence[Flavor] = DEMO_FLAVORS,
                     boot_delay: float | Callable[[], float] = 60.0, quota: Quota = Quota(),
                     scheduler_iteration: float = 600.0) -> FakeWorld:
    lock = threading.RLock()
    emulator = TorqueEmulator(clock, scheduler_iteration=scheduler_iteration)
    nova = FakeNova(clock, flavors=flavors, images=(DEMO_IMAGE,), quota=quota,
                    boot_delay=boot_delay)

    def mom_starts(server: FakeServer) -> None:
        # From microversion 2.47 a server embeds its flavor's vcpus and ram, not its id.
        with lock:
            emulator.mom_up(server.name, int(server.flavor["vcpus"]), int(server.flavor["ram"]))

    def mom_stops(server: FakeServer) -> None:
        with lock:
            emulator.mom_down(server.name)

    play_worker_user_data(nova, mom_starts, mom_stops)
    return FakeWorld(clock, emulator, nova, lock)


def play_worker_user_data(nova: FakeNova, mom_starts: Callable[[FakeServer], None],
                          mom_stops: Callable[[FakeServer], None]) -> None:
    """What deploy/cloud-init/worker-user-data.yaml.tmpl does on a real instance: pbs_mom
    starts once the instance is ACTIVE and its node entry is announced in its metadata,
    and stops with the instance."""
    def maybe_start(server: FakeServer) -> None:
        if server.status == "ACTIVE" and announces_entry(server.metadata):
            mom_starts(server)

    nova.on_active.append(maybe_start)
    nova.on_metadata.append(maybe_start)
    nova.on_delete.append(mom_stops)


def build_store(settings: Settings) -> SqliteStore:
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    return SqliteStore(settings.db_path)


def build_batch(settings: Settings, world: FakeWorld | None = None) -> Batch:
    hosts = HostsFile(settings.hosts_file) if settings.hosts_file else None
    if settings.batch_driver == "emulator":
        if world is None:
            raise DtError("the emulator batch driver needs a fake world")
        return TorqueBatch(world.runner(), queues=settings.queues, hosts=hosts,
                           command_timeout=settings.command_timeout)
    runner = SubprocessRunner(str(settings.torque_bin_dir) if settings.torque_bin_dir else None,
                              timeout=settings.command_timeout)
    return TorqueBatch(runner, queues=settings.queues, hosts=hosts,
                       command_timeout=settings.command_timeout)


def build_cloud(settings: Settings, world: FakeWorld | None = None, *,
                store: Store) -> Cloud:
    if settings.cloud_driver == "fake":
        if world is None:
            raise DtError("the fake cloud driver needs a fake world")
        return build_nova_cloud(world.nova, store, cluster_id=settings.cluster_id,
                                clock=world.clock)
    from dtserver.cloud.nova_session import build_nova_client
    client = build_nova_client(cloud_name=settings.cloud_name, auth=settings.cloud_auth,
                               region=settings.region)
    return build_nova_cloud(client, store, cluster_id=settings.cluster_id)


def build_nova_cloud(client: Any, store: Store, *, cluster_id: str,
                     network: str | None = None, clock: Clock | None = None) -> NovaCloud:
    """NovaCloud as this installation: the store's installation id on every instance, the
    store's records vouching for instances made before installation ids, and an event in
    the store for each instance that wears our cluster id but is not ours."""
    clock = clock or SystemClock()

    def knows_record(record_id: str) -> bool:
        try:
            store.record(record_id)
        except RecordNotFound:
            return False
        except StoreError as error:
            # Ownership unknown: the cloud counts as unread this pass, so nothing is deleted.
            raise CloudError(ErrorKind.TRANSIENT, f"cannot ask our records: {error}") from error
        return True

    def foreign(instance: ForeignInstance) -> None:
        why = (f"installation {instance.installation}, not ours "
               f"({store.installation_id()}): another dynamictorque uses cluster_id "
               f"{cluster_id!r} in this project; give each installation its own cluster_id"
               if instance.installation is not None else
               "no installation id and none of our records names it (made by an older "
               "release, or by us before the database was replaced)")
        try:
            store.add_event(clock.now(), EventKind.FOREIGN,
                            f"instance {instance.id} left alone: {why}",
                            hostname=instance.name[:255] or None)
        except DtError as error:
            log.warning("foreign instance event not stored id=%s error=%s", instance.id,
                        error)

    return NovaCloud(client, cluster_id=cluster_id, installation=store.installation_id(),
                     knows_record=knows_record, on_foreign=foreign, network=network,
                     clock=clock)


def build_reconciler(settings: Settings, *, clock: Clock, batch: Batch, cloud: Cloud,
                     store: SqliteStore, background_workers: int = 0) -> Reconciler:
    flavors: Mapping[str, Flavor] = {flavor.name: flavor for flavor in cloud.flavors()}
    return Reconciler(batch=batch, cloud=cloud, store=store, clock=clock,
                      policy=build_policy(settings, flavors),
                      torque_server=settings.torque_server,
                      on_event=EventRunner(settings.events),
                      background_workers=background_workers)
