"""The composition root: the only module that picks concrete adapters.

`[torque] driver = torque | emulator` and `[cloud] driver = nova | fake` select real
TORQUE commands or the emulator, real Nova or FakeNova; the reconciler cannot tell.
Each builder imports what it builds, so a process loads only its own parts: the API
(dtserver/wsgi.py) takes just its store from here, the reconciler never loads a fake, and
the emulated world (dtserver/fakes/) loads only when build_fake_world() is called.
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Mapping

from dtserver.batch import Batch
from dtserver.batch.hosts import HostsFile
from dtserver.batch.torque import TorqueBatch
from dtserver.batch.torque_commands import SubprocessRunner
from dtserver.clock import Clock, SystemClock
from dtserver.cloud import Cloud, CloudError, ForeignInstance
from dtserver.config import Settings, build_policy
from dtserver.events import EventRunner
from dtserver.model import DtError, ErrorKind, Flavor
from dtserver.store import EventKind, RecordNotFound, Store, StoreError
from dtserver.store.sqlite import SqliteStore

if TYPE_CHECKING:
    from dtserver.api.settings import ApiSettings
    from dtserver.cloud.nova import NovaCloud
    from dtserver.fakes.world import FakeWorld
    from dtserver.reconcile.loop import Reconciler

log = logging.getLogger(__name__)


def build_fake_world(clock: Clock, **options: Any) -> FakeWorld:
    """The emulated cluster of the demo and the simulator (dtserver/fakes/world.py). The
    fakes are imported here, on first use, so that a real deployment never loads them."""
    from dtserver.fakes.world import build_world
    return build_world(clock, **options)


def build_store(settings: Settings) -> SqliteStore:
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    return SqliteStore(settings.db_path)


def build_api_store(settings: ApiSettings) -> SqliteStore:
    """The API's store: the reconciler's database, named by the API's own settings."""
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
    from dtserver.cloud.nova import NovaCloud
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
    from dtserver.reconcile.loop import Reconciler
    flavors: Mapping[str, Flavor] = {flavor.name: flavor for flavor in cloud.flavors()}
    return Reconciler(batch=batch, cloud=cloud, store=store, clock=clock,
                      policy=build_policy(settings, flavors),
                      torque_server=settings.torque_server,
                      on_event=EventRunner(settings.events),
                      background_workers=background_workers)
