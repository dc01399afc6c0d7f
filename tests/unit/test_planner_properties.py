"""Random snapshots in, the safety invariants hold on every plan; random queues in, no
job waits for node slots that a larger flavor would have spared."""
from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dtserver.actions import DeleteInstance, LaunchInstance, OfflineNode, ReleaseNode
from dtserver.model import DrainKind, Flavor, JobState, NodeState, PoolHealth, Quota
from dtserver.planning import plan
from dtserver.planning.invariants import check_plan
from tests.builders import (
    LARGE, SMALL, T0, hint, instance, job, node, policy, pool, record, request, seconds,
    snapshot)

POLICY = policy(pool("cloud", max_nodes=6, max_cores=30, min_nodes=1),
                pool("gpu", max_nodes=3, properties={"CLOUD", "gpu"}),
                max_cores=40, max_booting=4)
SLOTS = [slot for p in POLICY.pools for slot in p.slot_names]

requests = st.builds(request, count=st.integers(1, 4), cores=st.integers(1, 9),
                     mem_mb=st.sampled_from([0, 1000, 9000]),
                     properties=st.sampled_from([frozenset(), {"CLOUD"}, {"gpu"}]),
                     distinct=st.booleans())


@st.composite
def snapshots(draw):
    hosts = draw(st.lists(st.sampled_from(SLOTS), unique=True, max_size=len(SLOTS)))
    records, instances, nodes = [], [], []
    job_ids = [f"{n}.vm" for n in range(30)]
    for index, host in enumerate(hosts):
        state = draw(st.sampled_from(list(NodeState)))
        pool_name = "gpu" if host.startswith("gpu") else "cloud"
        rec = record(host, state=state, pool_name=pool_name,
                     flavor=draw(st.sampled_from([SMALL, LARGE])),
                     since=T0 - seconds(draw(st.integers(0, 5000))),
                     instance_id=f"i-{index}" if draw(st.booleans()) else None,
                     drain=draw(st.sampled_from([None, *DrainKind])),
                     down_since=draw(st.sampled_from([None, T0 - seconds(600)])))
        records.append(rec)
        if draw(st.booleans()):
            instances.append(instance(f"i-{index}", name=host, pool_name=pool_name,
                                      status=draw(st.sampled_from(["BUILD", "ACTIVE", "ERROR"])),
                                      record_id=rec.id))
        if draw(st.booleans()):
            jobs = draw(st.lists(st.sampled_from(job_ids), max_size=2, unique=True))
            states = draw(st.sampled_from([("free",), ("offline",), ("down",),
                                           ("job-exclusive",), ("down", "offline")]))
            nodes.append(node(host, states=states, jobs=jobs,
                              reported=draw(st.booleans())))
    if draw(st.booleans()):   # an orphan, maybe with a job on its node
        instances.append(instance("i-orphan", name="cloud-006", record_id="r-lost"))
    jobs = [job(f"{n}.vm", state=draw(st.sampled_from(list(JobState))), req=draw(requests),
                account=draw(st.sampled_from([None, "chem"])))
            for n in range(draw(st.integers(0, 12)))]
    hints = [hint(n, req=draw(requests), count=draw(st.integers(1, 3)))
             for n in range(draw(st.integers(0, 3)))]
    return snapshot(
        jobs=None if draw(st.integers(0, 5)) == 0 else jobs,
        nodes=None if draw(st.integers(0, 5)) == 0 else nodes,
        instances=None if draw(st.integers(0, 5)) == 0 else instances,
        records=records, hints=hints, with_slots=POLICY,
        sleeping=draw(st.booleans()),
        quotas={"default": Quota(cores=draw(st.integers(0, 20)))} if draw(st.booleans()) else {},
        pool_health={"gpu": PoolHealth("gpu", 1, T0 + seconds(30))} if draw(st.booleans())
        else {})


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(snapshots(), st.integers(0, 3000))
def test_every_plan_keeps_the_safety_invariants(snap, offset):
    now = T0 + seconds(offset)
    result = plan(snap, POLICY, now)
    check_plan(snap, POLICY, result)   # raises InvariantViolation
    assert plan(snap, POLICY, now) == result   # pure: same inputs, same plan
    busy = {n.name for n in snap.nodes or () if n.jobs}
    for action in result.actions:
        if isinstance(action, (ReleaseNode, OfflineNode)) and action.hostname in busy:
            assert isinstance(action, OfflineNode) and action.drain is DrainKind.ADMIN
        if isinstance(action, DeleteInstance):
            assert snap.nodes is not None and snap.instances is not None
    if snap.sleeping or snap.instances is None:
        assert not result.of_type(LaunchInstance)


SIZES = tuple(Flavor(f"c{cores}", cores=cores, mem_mb=0, id=f"c{cores}")
              for cores in (1, 2, 4, 8, 16))


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 10), st.lists(st.integers(1, 16), min_size=1, max_size=60))
def test_no_job_waits_for_slots_while_a_larger_flavor_would_have_served_it(slots, sizes):
    """A job left waiting for node slots must not fit any node this plan launches, had
    that node been of the largest flavor."""
    pol = policy(pool(flavors=SIZES, max_nodes=slots))
    jobs = [job(f"{n}.vm", req=request(1, cores)) for n, cores in enumerate(sizes)]
    result = plan(snapshot(jobs=jobs, with_slots=pol), pol, T0)
    cores_of = {item.id: cores for item, cores in zip(jobs, sizes)}
    used = {launch.hostname: 0 for launch in result.of_type(LaunchInstance)}
    waiting = []
    for verdict in result.verdicts:
        if verdict.status == "launching":
            used[verdict.reason.removeprefix("launching ")] += cores_of[verdict.job_id]
        elif "max_nodes" in verdict.reason:
            waiting.append(cores_of[verdict.job_id])
    largest = SIZES[-1].cores
    for cores in waiting:
        assert all(largest - taken < cores for taken in used.values()), (cores, used)
