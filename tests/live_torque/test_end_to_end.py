"""The whole life on real TORQUE and real Nova, deployed as the docs say: qsub through our
filter, instances launched and joined, jobs run on real moms to exit 0, then every node
drained and deleted, its slot restored."""
from __future__ import annotations

import pytest

from dtserver.model import NodeState
from tests.live_torque.site import BIG_POOL, Site, job_output

pytestmark = [pytest.mark.live_torque, pytest.mark.live_nova]

ONE_CORE = "#!/bin/sh\n#PBS -N one\n#PBS -q cloud\nhostname\nsleep 2\n"
TWO_NODES = ("#!/bin/sh\n#PBS -N two\n#PBS -l nodes=2:ppn=2:CLOUD\n"
             "{pbsdsh} -u hostname\nsleep 2\n")
MEMORY = "#!/bin/sh\n#PBS -N mem\n#PBS -l nodes=1:ppn=1:CLOUD,mem=64mb\nsleep 2\n"
ARRAY = "#!/bin/sh\n#PBS -N arr\n#PBS -t 1-3\n#PBS -l nodes=1:ppn=1:CLOUD\nsleep 2\n"
BIG = "#!/bin/sh\n#PBS -N big\n#PBS -l nodes=1:ppn=4:BIG\necho $PBS_NP\nsleep 2\n"


def test_jobs_run_on_real_moms_and_the_cluster_scales_back_to_zero(site: Site) -> None:
    site.deploy()
    site.wait_for(site.slots_restored, "the slots offline with their note")
    pbsdsh = site.torque.install.command("pbsdsh")
    jobs = [site.submit(ONE_CORE), site.submit(TWO_NODES.format(pbsdsh=pbsdsh)),
            site.submit(MEMORY), site.submit(BIG)]
    array = site.submit(ARRAY)
    site.wait_for(lambda: site.all_done(jobs) and all(
        job.state == "C" for job_id, job in site.jobs().items()
        if job_id.startswith(array.split("[")[0] + "[")), "every job done")

    finished = site.jobs()
    assert {job_id: finished[job_id].exit_status for job_id in jobs} == dict.fromkeys(jobs, 0)
    subjobs = [job for job_id, job in finished.items() if job_id.startswith(
        array.split("[")[0] + "[") and job_id != array]
    assert len(subjobs) == 3 and all(job.exit_status == 0 for job in subjobs)
    # pbsdsh reached a mom on each of the two nodes the job got.
    two_hosts = {part.split("/")[0] for part in finished[jobs[1]].exec_host.split("+")}
    assert len(two_hosts) == 2
    assert set(job_output(site.torque, jobs[1], "two").split()) == two_hosts
    # The BIG job went to the big pool's 4-core instance.
    assert finished[jobs[3]].exec_host.startswith(f"{BIG_POOL}-001/")
    assert job_output(site.torque, jobs[3], "big").split()[0] == "4"

    site.wait_for(site.scaled_to_zero, "every instance deleted")
    site.wait_for(site.slots_restored, "every slot offline with its note again")
    records = site.records()
    launched = [record for record in records if record.instance_id]
    assert all(record.state is NodeState.DELETED for record in records)
    # One create per record, none twice: every server Nova saw belongs to one record.
    assert len({record.instance_id for record in launched}) == len(launched)
    assert len(site.events("launch")) == len(launched)
    assert {name for record in launched for name in [record.hostname]} <= set(site.nodes())
    assert site.failures() == []
