"""Hint trust through the reconciler and its store: strikes, prewarm nodes, parse once."""
from __future__ import annotations

from dtserver.reconcile import hints as hints_module
from dtserver.actions import LaunchInstance
from dtserver.model import NodeState
from tests.sim.scenario import Cluster, scenario_policy

import pytest


@pytest.fixture
def cluster(tmp_path):
    return Cluster(tmp_path, scenario_policy())


def post(cluster, user: str, resources: str = "nodes=1:ppn=4", **fields) -> None:
    cluster.store.add_hint(cluster.clock.now(), {"user": user, "queue": "batch",
                                                 "resources": [resources], **fields},
                           source="192.0.2.7")


def launches(report) -> list[LaunchInstance]:
    return report.plan.of_type(LaunchInstance)


def test_hints_that_keep_expiring_unmatched_end_the_users_hint_credit(cluster):
    for _ in range(3):
        post(cluster, "mallory")
        cluster.step(1)
        cluster.step(30)                     # past the 20 s TTL: expired unmatched
    assert cluster.store.hints() == ()
    strikes = cluster.store.hint_strikes(cluster.clock.now() - cluster.policy.hints.penalty)
    assert (strikes.by_user, strikes.by_source) == ({"mallory": 3}, {"192.0.2.7": 3})

    post(cluster, "mallory")
    post(cluster, "alice", resources="nodes=1:ppn=8")
    report = cluster.step(1)
    assert [launch.reason for launch in launches(report)] == ["demand: hint:5#0"]
    assert any("no hint credit" in note and "mallory" in note for note in report.plan.notes)


def test_a_hint_node_is_a_prewarm_until_its_job_runs_on_it(cluster):
    post(cluster, "alice")
    cluster.step(1)
    [record] = cluster.store.records()
    assert record.prewarm
    cluster.submit({"nodes": "1:ppn=4"}, 600, owner="alice")
    for _ in range(20):
        cluster.step(10)
        [record] = cluster.store.records()
        if record.state is NodeState.BUSY:
            break
    assert record.state is NodeState.BUSY and not record.prewarm


def test_a_prewarm_node_no_job_came_for_is_deleted_long_before_max_idle_time(cluster):
    post(cluster, "alice")
    cluster.step(1)
    for _ in range(30):                      # 300 s: boot 60 s, then prewarm idle 60 s
        cluster.step(10)
        if not cluster.live_servers():
            break
    assert cluster.live_servers() == []      # max_idle_time here is 300 s after boot
    cluster.step(10)
    cluster.assert_nothing_leaked()


def test_each_stored_hint_is_read_once_and_alike_requests_parsed_once(cluster, monkeypatch):
    read, parsed = [], []
    real_read, real_parse = hints_module.hint_from_stored, hints_module.parse_request
    monkeypatch.setattr(hints_module, "hint_from_stored",
                        lambda stored, parse: read.append(stored.id) or real_read(stored, parse))
    monkeypatch.setattr(hints_module, "parse_request",
                        lambda *raw: parsed.append(raw) or real_parse(*raw))
    for index in range(30):
        post(cluster, f"user{index}", array="0-99999")
    post(cluster, "alice", resources="nodes=2:ppn=2")
    for _ in range(3):
        cluster.step(1)
    assert sorted(read) == sorted(set(read)) and len(read) == 31
    assert sorted(parsed) == [(("nodes=1:ppn=4",), "0-99999"), (("nodes=2:ppn=2",), None)]
