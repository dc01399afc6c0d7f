"""Time plan() on a large cluster: 100k queued jobs and 2k owned nodes (target <= 0.25 s),
and a pass's planning on a deep queue that does not move: 50k queued 1-core jobs, 5k busy
nodes and every slot taken (target <= 50 ms), with the plan as the store records it.

    python bench/bench_planner.py [--jobs 100000] [--nodes 2000] [--repeat 5]
                                  [--deep-jobs 50000] [--deep-nodes 5000]
"""
from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dtserver.model import (  # noqa: E402
    Chunk, Flavor, Instance, Job, JobState, Node, NodeRecord, NodeState, Request, Snapshot)
from dtserver.planning import plan  # noqa: E402
from dtserver.planning.invariants import check_plan  # noqa: E402
from dtserver.policy import Policy, Pool  # noqa: E402
from dtserver.serialize import plan_as_data  # noqa: E402

T0 = datetime(2026, 11, 25, tzinfo=timezone.utc)
FLAVORS = (Flavor("small", 2, 4096), Flavor("medium", 4, 8192), Flavor("large", 8, 16384),
           Flavor("xlarge", 16, 65536))
SHAPES = [  # request, weight: mostly serial, some MPI, a few big-memory
    (Request((Chunk(1, 1),)), 50), (Request((Chunk(1, 4, 8000),)), 20),
    (Request((Chunk(2, 8),)), 10), (Request((Chunk(8, 1, distinct=False),)), 10),
    (Request((Chunk(1, 16, 60000),)), 5), (Request((Chunk(4, 2),)), 5)]


def build(jobs: int, nodes: int, seed: int) -> tuple[Snapshot, Policy]:
    rng = random.Random(seed)
    pools = (Pool("cloud", FLAVORS, "img", max_nodes=nodes + 500, max_cores=None),
             Pool("gpu", (Flavor("gpu", 8, 32768, gpus=1),), "img", max_nodes=200,
                  properties=frozenset({"CLOUD", "gpu"})))
    policy = Policy(pools=pools, max_cores=(nodes + 400) * 8)
    requests = [shape for shape, _ in SHAPES]
    weights = [weight for _, weight in SHAPES]
    job_list = [Job(id=f"{n}.vm", owner=f"u{n % 50}", queue="batch", state=JobState.QUEUED,
                    created=T0 + timedelta(seconds=n), request=rng.choices(requests, weights)[0])
                for n in range(jobs)]
    records, node_list, instances = [], [], []
    for index, slot in enumerate(pools[0].slot_names[:nodes]):
        flavor = FLAVORS[index % 3]
        busy = index % 10 != 0
        records.append(NodeRecord(id=f"r{index}", hostname=slot, pool="cloud",
                                  flavor=flavor.name, cores=flavor.cores,
                                  state=NodeState.BUSY if busy else NodeState.IDLE,
                                  created=T0, state_since=T0, instance_id=f"i{index}"))
        node_list.append(Node(slot, frozenset({"job-exclusive" if busy else "free"}),
                              flavor.cores, frozenset({"CLOUD"}),
                              jobs=(f"r{index}.vm",) if busy else (),
                              used_cores=flavor.cores if busy else 0, has_reported=True))
        instances.append(Instance(id=f"i{index}", name=slot, status="ACTIVE", created=T0,
                                  addresses=("10.0.0.1",), pool="cloud", record_id=f"r{index}"))
    for pool in pools:
        node_list += [Node(slot, frozenset({"down", "offline"}), pool.slot_np, pool.properties)
                      for slot in pool.slot_names[nodes if pool.name == "cloud" else 0:]]
    snapshot = Snapshot(jobs=tuple(job_list), nodes=tuple(node_list),
                        instances=tuple(instances), records=tuple(records))
    return snapshot, policy


def build_deep_queue(jobs: int, nodes: int) -> tuple[Snapshot, Policy]:
    """Every slot holds a busy 16-core node and the queue waits for capacity: a pass
    plans nothing new, however long the queue."""
    flavor = FLAVORS[-1]
    pool = Pool("cloud", FLAVORS, "img", max_nodes=nodes)
    serial = Request((Chunk(1, 1),))
    job_list = [Job(id=f"{n}.vm", owner=f"u{n % 50}", queue="batch", state=JobState.QUEUED,
                    created=T0 + timedelta(seconds=n), request=serial) for n in range(jobs)]
    records, node_list, instances = [], [], []
    for index, slot in enumerate(pool.slot_names):
        records.append(NodeRecord(id=f"r{index}", hostname=slot, pool="cloud",
                                  flavor=flavor.name, cores=flavor.cores, state=NodeState.BUSY,
                                  created=T0, state_since=T0, instance_id=f"i{index}"))
        node_list.append(Node(slot, frozenset({"job-exclusive"}), flavor.cores,
                              frozenset({"CLOUD"}), jobs=(f"r{index}.vm",),
                              used_cores=flavor.cores, has_reported=True))
        instances.append(Instance(id=f"i{index}", name=slot, status="ACTIVE", created=T0,
                                  addresses=("10.0.0.1",), pool="cloud", record_id=f"r{index}"))
    snapshot = Snapshot(jobs=tuple(job_list), nodes=tuple(node_list),
                        instances=tuple(instances), records=tuple(records))
    return snapshot, Policy(pools=(pool,))


def timed(repeat: int, work) -> tuple[float, float, object]:
    times, result = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        result = work()
        times.append(time.perf_counter() - started)
    return statistics.median(times), max(times), result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--nodes", type=int, default=2_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--deep-jobs", type=int, default=50_000)
    parser.add_argument("--deep-nodes", type=int, default=5_000)
    args = parser.parse_args()
    snapshot, policy = build(args.jobs, args.nodes, args.seed)
    now = T0 + timedelta(hours=1)
    median, worst, result = timed(args.repeat, lambda: plan(snapshot, policy, now))
    started = time.perf_counter()
    check_plan(snapshot, policy, result)
    check = time.perf_counter() - started
    launches = sum(1 for action in result.actions if type(action).__name__ == "LaunchInstance")
    print(f"plan: {args.jobs} queued jobs, {args.nodes} nodes: "
          f"median {median:.3f} s, max {worst:.3f} s "
          f"(target <= 0.25 s); check_plan {check:.3f} s; {launches} launches, "
          f"{len(result.verdicts)} verdicts")

    deep, deep_policy = build_deep_queue(args.deep_jobs, args.deep_nodes)
    planned, _, deep_plan = timed(args.repeat, lambda: plan(deep, deep_policy, now))
    recorded, _, data = timed(args.repeat, lambda: json.dumps(plan_as_data(deep_plan)))
    print(f"deep queue, nothing new: {args.deep_jobs} queued 1-core jobs, {args.deep_nodes} "
          f"busy nodes, every slot taken: plan median {planned * 1000:.0f} ms, recording it "
          f"{recorded * 1000:.0f} ms ({len(data) / 1e6:.1f} MB), together "
          f"{(planned + recorded) * 1000:.0f} ms (target <= 50 ms); "
          f"{len(deep_plan.actions)} actions")
    return 0


if __name__ == "__main__":
    sys.exit(main())
