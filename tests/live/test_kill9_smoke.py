"""The kill -9 harness itself, on a few kill points (bench/bench_kill9.py runs >= 100).

The reconciler process (the `dtserver-reconciler` console script, background workers and
all) is SIGKILLed, while one job goes through a node's whole life, at one point of each
trigger source: right after servers.create (a log line), right after the record turns
`deleting` and before the node entry is released (a record state), and right after the
instance delete is sent (a store event); it is started again each time. Then Nova and
TORQUE must show nothing leaked, nothing created twice, no node deleted under the job, no
orphan node entry, and the job run once.
"""
from __future__ import annotations

import os
import random
import time
from collections import Counter

import pytest

from dtserver.batch.torque_cli import open_server
from dtserver.cloud.nova import CLUSTER_KEY, PRODUCT_TAG, RECORD_KEY, cluster_tag
from tests.live.kill9 import (
    Checker, Kill9Run, KillPoint, SequencePlan, Site, Timing, World, nova_databases,
    server_history)

pytestmark = pytest.mark.live_nova

# Points whose recovery needs no timer longer than a pass: a launch cut off before
# servers.create waits for launch_grace (120 s), a lost scheduler poke for 30 s, and an
# instance released but not yet deleted for the delete retry (60 s).
POINTS = (
    KillPoint("servers.create"),
    KillPoint("deleting"),
    KillPoint("delete sent"),
)


def test_a_reconciler_killed_in_a_node_life_leaves_nothing_behind(clean_nova, tmp_path):
    site = Site(clean_nova, tmp_path / "site", cluster_id=f"kill9-smoke-{os.getpid()}",
                max_nodes=1, timing=Timing(idle_seconds=1.5), migrate_each_start=False)
    world = World(site, random.Random(0), runtimes=(1.0, 1.0), wave_sizes=(1, 1),
                  early_waves=0.0, max_waves=1)
    run = Kill9Run(site, seed=0, world=world, trigger_timeout=60.0, settle_timeout=150.0,
                   progress=print)

    results = run.run(SequencePlan(POINTS), len(POINTS))

    report = "\n".join([results.summary(), *map(str, results.violations),
                        *results.job_problems, *results.exits, *results.world_errors,
                        results.unsettled])
    assert [(outcome.label, outcome.how) for outcome in results.outcomes] == [
        (point.label, "triggered") for point in POINTS], report
    assert results.violations == [], report
    assert results.settled and not results.exits and not results.world_errors, report
    assert (results.jobs_ok, results.jobs_total) == (1, 1), report
    # One server ran the job: the one created before the first kill, adopted after it.
    assert results.servers_created == 1, report


def test_the_checks_see_a_leak_a_duplicate_and_an_orphan_entry(clean_nova, tmp_path):
    """The harness's checks fail when they should: two servers of ours that claim one record
    id (which no record has) and share a name, and a node entry that is no slot."""
    site = Site(clean_nova, tmp_path / "site", cluster_id=f"kill9-planted-{os.getpid()}",
                max_nodes=1)
    site.setup()
    checker = Checker(site, nova_databases(clean_nova))
    endpoint = clean_nova.endpoint
    for _ in range(2):
        clean_nova.client().servers.create(
            site.slot_names[0], endpoint.image, "dt-small", nics=[{"net-id": endpoint.network}],
            meta={CLUSTER_KEY: site.cluster_id, RECORD_KEY: "planted"},
            tags=[PRODUCT_TAG, cluster_tag(site.cluster_id)])
    with open(site.hosts, "a") as hosts:
        hosts.write("127.0.0.3 stray\n")
    with open_server(site.home) as torque:
        assert torque.emulator.run(["qmgr", "-c", "create node stray np=1"]).status == 0

    deadline = time.monotonic() + 60
    while len(server_history(checker.databases, site.cluster_id)) < 2:
        assert time.monotonic() < deadline, "the servers never reached Nova's cell database"
        time.sleep(0.2)
    found = checker.check(checker.snapshot(), 0, settled=True)

    assert Counter(item.what for item in found) == {
        "duplicate": 2,           # one record id, and one name alive twice
        "leak": 2,
        "orphan entry": 2,        # "stray", and the slot entry missing
    }, found
