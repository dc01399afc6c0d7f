"""Faults on the real daemons: the reconciler killed mid-launch and mid-release, pbs_server
restarted under busy and idle nodes, pbs_sched dead, the API down or hung while users
submit, a mom killed. Each ends with TORQUE's and Nova's own state: every job exited 0,
nothing leaked, nothing deleted under a job, no node left offline that we did not drain."""
from __future__ import annotations

import time

import pytest

from dtserver.model import NodeState
from tests.hooks.support import HungServer, closed_port_url
from tests.live_torque.site import Site

pytestmark = [pytest.mark.live_torque, pytest.mark.live_nova]

SHORT = "#!/bin/sh\n#PBS -l nodes=1:ppn=1:CLOUD\nsleep 1\n"
WHOLE_NODE = "#!/bin/sh\n#PBS -l nodes=1:ppn=2:CLOUD\nsleep {seconds}\n"
QSUB_SECONDS = 5.0                # the filter's own bound is about 1 s; this is generous


def state_of(site: Site, hostname: str) -> NodeState | None:
    live = [record for record in site.records() if record.hostname == hostname
            and record.state is not NodeState.DELETED]
    return live[0].state if live else None


def finish(site: Site, jobs: list[str]) -> None:
    site.wait_for(lambda: site.all_done(jobs), f"jobs {jobs} done")
    finished = site.jobs()
    assert [finished[job].exit_status for job in jobs] == [0] * len(jobs), site.describe()


def scale_to_zero(site: Site) -> None:
    site.wait_for(site.scaled_to_zero, "every instance deleted")
    site.wait_for(site.slots_restored, "every slot offline with its note again")
    launched = [record for record in site.records() if record.instance_id]
    assert len({record.instance_id for record in launched}) == len(launched)


def test_reconciler_killed_mid_launch_and_mid_release_leaks_and_duplicates_nothing(
        site: Site) -> None:
    site.deploy()
    site.wait_for(site.slots_restored, "slots registered")
    job = site.submit(SHORT)
    # Killed as soon as Nova holds the server: the pass may not have recorded its id yet.
    site.wait_for(site.owned_servers, "a server created", poll=0.05)
    site.kill_reconciler()
    site.start_reconciler()
    finish(site, [job])
    assert len(site.owned_servers()) == 1

    # Killed once the release of the idle node has begun (record DELETING, written before
    # the TORQUE and Nova calls it describes).
    hostname = site.records()[0].hostname
    site.wait_for(lambda: state_of(site, hostname) is NodeState.DELETING, "the release begun",
                  poll=0.05)
    site.kill_reconciler()
    site.start_reconciler()
    scale_to_zero(site)
    assert site.failures() == []


def test_pbs_server_restart_under_busy_and_idle_nodes(site: Site) -> None:
    site.deploy()
    site.wait_for(site.slots_restored, "slots registered")
    busy = site.submit(WHOLE_NODE.format(seconds=40))   # outlives the restart and the moms' return
    short = site.submit(WHOLE_NODE.format(seconds=1))
    site.wait_for(lambda: site.all_done([short]) and site.jobs()[busy].state == "R",
                  "one node busy, one idle")
    busy_host = site.jobs()[busy].exec_host.split("/")[0]
    records_before = {record.hostname: record.id for record in site.records()}

    site.torque.server.restart_server()

    # Two joins in one pass leave the first entry saved offline with the slot note
    # (TORQUE wrote node_status while it was new): it comes back so, and the planner
    # clears it. Every live node is usable again once its mom reports.
    def usable() -> bool:
        nodes = site.nodes()
        owned = [record.hostname for record in site.records()
                 if record.state in (NodeState.IDLE, NodeState.BUSY)]
        return bool(owned) and all(
            "offline" not in nodes[name]["state"] and "down" not in nodes[name]["state"]
            and not nodes.get(name, {}).get("note") for name in owned)

    site.wait_for(usable, "every live node online after the restart")
    # A pass in flight during the restart may wait out its command timeout first.
    site.wait_for(lambda: state_of(site, busy_host) is NodeState.BUSY, "the busy node busy")
    follow_up = site.submit(WHOLE_NODE.format(seconds=1))
    finish(site, [busy, short, follow_up])
    # The busy node kept its instance and record throughout.
    assert records_before[busy_host] in {record.id for record in site.records()}
    scale_to_zero(site)
    assert site.failures() == []


def timed_submit(site: Site, script: str) -> tuple[str, float]:
    started = time.monotonic()
    job = site.submit(script)
    return job, time.monotonic() - started


def test_qsub_stays_quick_with_the_api_down_or_hung_and_a_dead_scheduler_is_reported(
        site: Site) -> None:
    site.deploy(api=False)
    site.torque.server.kill_scheduler()
    site.point_filter_at(closed_port_url())           # nothing listens: refused at once
    down, down_seconds = timed_submit(site, SHORT)
    hung = HungServer()
    try:
        site.point_filter_at(hung.url)
        stuck, stuck_seconds = timed_submit(site, SHORT)
    finally:
        hung.close()
    assert down_seconds < QSUB_SECONDS and stuck_seconds < QSUB_SECONDS

    # No hint reached the service: the queue poll finds the jobs and launches for them.
    site.wait_for(lambda: any(record.state is NodeState.IDLE for record in site.records()),
                  "a node ready")
    site.start_api()
    site.wait_for(lambda: any("is pbs_sched running?" in note
                              for note in (site.status().get("plan") or {}).get("notes", [])),
                  "/status reporting the scheduler stall")
    assert {job.state for job in site.jobs().values()} == {"Q"}

    site.torque.server.start_scheduler()
    finish(site, [down, stuck])


def test_a_killed_mom_is_noticed_and_its_node_replaced(site: Site) -> None:
    # Moms report every 5 s and the server marks a node down after 15 s of silence, so
    # the test need not wait TORQUE's default 150-300 s.
    site.fleet.status_update_time = 5
    site.torque.server.qmgr("set server node_check_rate = 15")
    site.torque.server.restart_server()     # the first node check is set at start
    site.idle_seconds = 300                 # the node must go down before it idles out
    site.deploy()
    site.wait_for(site.slots_restored, "slots registered")
    first = site.submit(SHORT)
    finish(site, [first])
    # The job's end reaches our record at the next pass, not at once.
    site.wait_for(lambda: any(record.state is NodeState.IDLE for record in site.records()),
                  "the node idle")
    (victim,) = [record.hostname for record in site.records()
                 if record.state is NodeState.IDLE]
    site.fleet.kill_mom(victim)
    site.wait_for(lambda: "down" in site.nodes()[victim]["state"], "the dead mom's node down")

    replacement_job = site.submit(SHORT)
    finish(site, [replacement_job])
    assert site.jobs()[replacement_job].exec_host.split("/")[0] != victim
    site.wait_for(lambda: state_of(site, victim) is None, "the down node deleted")
    assert victim not in {server.name for server in site.owned_servers()}
