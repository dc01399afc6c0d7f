"""The kill -9 harness's own checks (bench/bench_kill9.py kills the reconciler at >= 100
points and runs them after every kill; a node's whole life per kill is too long for the
suite's budget, so the kills themselves run in the bench)."""
from __future__ import annotations

import os
import time
from collections import Counter

import pytest

from dtserver.cloud.nova import CLUSTER_KEY, PRODUCT_TAG, RECORD_KEY, cluster_tag
from dtserver.fakes.torque.persistence import open_server
from tests.live.kill9.checks import Checker
from tests.live.kill9.nova import nova_databases, server_history
from tests.live.kill9.reconciler import Site

pytestmark = pytest.mark.live_nova

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
