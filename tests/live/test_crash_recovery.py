"""A reconciler killed in the middle of a launch, on the real Nova API: after a restart on
the same SQLite file no server leaks and none is created twice.

The kill is a Crash (a BaseException, which nothing in the reconciler catches) raised by
the Cloud wrapper at the chosen point, so the process's work stops exactly there; the
restart is a new Reconciler over a new store on the same file.
"""
from __future__ import annotations

import pytest

from dtserver.model import NodeState
from tests.live.world import Crash, CrashingCloud, LiveWorld

pytestmark = pytest.mark.live_nova


def crash_during_first_launch(world: LiveWorld, *, after_create: bool) -> CrashingCloud:
    crashing = CrashingCloud(world.nova, after_create=after_create)
    doomed = world.reconciler(crashing)
    world.step(doomed)                            # slots registered
    world.submit(1, runtime=30)
    with pytest.raises(Crash):
        world.step(doomed)
    return crashing


def finish_after_restart(world: LiveWorld) -> None:
    reconciler = world.reconciler()
    world.run_until(reconciler, lambda: world.jobs() and all(
        job.state == "C" for job in world.jobs().values()))
    world.run_until(reconciler, lambda: not world.owned_ids() and all(
        record.state is NodeState.DELETED
        for record in world.store.records(include_deleted=True)))


def test_a_crash_between_record_and_create_is_relaunched_once_after_restart(world):
    crashing = crash_during_first_launch(world, after_create=False)

    (record,) = world.store.records()
    assert (record.state, record.instance_id) == (NodeState.LAUNCHING, None)
    assert crashing.created == [] and world.owned_ids() == set()

    finish_after_restart(world)

    # The orphaned record was closed (no instance could carry its id) and one new
    # launch ran the job.
    assert world.store.record(record.id).state is NodeState.DELETED
    assert len(world.cloud.created) == 1
    assert set(world.seen) == {world.cloud.created[0].id}
    assert world.live.server_ids() == set()


def test_a_crash_between_create_and_record_update_is_adopted_after_restart(world):
    crashing = crash_during_first_launch(world, after_create=True)

    (record,) = world.store.records()
    (created,) = crashing.created
    assert (record.state, record.instance_id) == (NodeState.LAUNCHING, None)
    assert world.owned_ids() == {created.id}

    finish_after_restart(world)

    # The server Nova already had was adopted by its record id, never booted again.
    assert world.cloud.created == []
    assert set(world.seen) == {created.id}
    assert world.store.record(record.id).instance_id == created.id
    assert world.live.server_ids() == set()
