"""Tiny value factories for model objects: every argument has a sensible default."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from dtserver.model import (
    ENTRY_READY, ENTRY_READY_KEY, Chunk, DemandHint, DrainKind, Flavor, HintStrikes, Instance,
    Intent,
    IntentKind, Job, JobState, Node, NodeRecord, NodeState, PoolHealth, Quota, Request, Snapshot)
from dtserver.policy import Policy, Pool

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)

SMALL = Flavor("m1.small", cores=2, mem_mb=4096, id="f-small")
LARGE = Flavor("m1.large", cores=8, mem_mb=16384, id="f-large")


def seconds(n: float) -> timedelta:
    return timedelta(seconds=n)


def pool(name: str = "cloud", *, flavors=(SMALL, LARGE), max_nodes: int = 10,
         min_nodes: int = 0, max_cores: int | None = None,
         properties=frozenset({"CLOUD"}), queues=frozenset(), accounts=frozenset()) -> Pool:
    return Pool(name=name, flavors=tuple(flavors), image="img-1", properties=frozenset(properties),
                max_nodes=max_nodes, min_nodes=min_nodes, max_cores=max_cores,
                queues=frozenset(queues), accounts=frozenset(accounts))


def policy(*pools: Pool, **overrides) -> Policy:
    return Policy(pools=pools or (pool(),), **overrides)


def request(count: int = 1, cores: int = 1, *, mem_mb: int = 0, gpus: int = 0,
            properties=frozenset(), distinct: bool = True) -> Request:
    return Request((Chunk(count, cores, mem_mb, gpus, frozenset(properties),
                          distinct=distinct),))


def job(job_id: str = "1.vm", *, state: JobState = JobState.QUEUED, owner: str = "tuser",
        queue: str = "batch", created: datetime = T0, req: Request | None = None,
        account: str | None = None, exec_hosts=()) -> Job:
    return Job(id=job_id, owner=owner, queue=queue, state=state, created=created,
               request=req if req is not None else request(), account=account,
               exec_hosts=tuple(exec_hosts))


def node(name: str, *, states=("free",), np: int = 2, jobs=(), used_cores: int | None = None,
         reported: bool = True, note: str | None = None,
         properties=frozenset({"CLOUD"})) -> Node:
    return Node(name=name, states=frozenset(states), np=np, properties=frozenset(properties),
                jobs=tuple(jobs), used_cores=len(jobs) if used_cores is None else used_cores,
                note=note, has_reported=reported)


def record(hostname: str = "cloud-001", *, state: NodeState = NodeState.IDLE,
           since: datetime = T0, pool_name: str = "cloud", flavor: Flavor = SMALL,
           instance_id: str | None = "i-1", record_id: str | None = None,
           drain: DrainKind | None = None, created: datetime | None = None,
           down_since: datetime | None = None) -> NodeRecord:
    return NodeRecord(id=record_id or f"r-{hostname}", hostname=hostname, pool=pool_name,
                      flavor=flavor.name, cores=flavor.cores, state=state,
                      created=created or since, state_since=since, instance_id=instance_id,
                      drain=drain, down_since=down_since)


def instance(instance_id: str = "i-1", *, name: str = "cloud-001", status: str = "ACTIVE",
             record_id: str | None = None, pool_name: str = "cloud",
             addresses=("169.254.80.100",), fault: str | None = None,
             entry_announced: bool = False) -> Instance:
    return Instance(id=instance_id, name=name, status=status, created=T0,
                    addresses=tuple(addresses), pool=pool_name,
                    record_id=record_id or f"r-{name}", fault=fault,
                    metadata={ENTRY_READY_KEY: ENTRY_READY} if entry_announced else {})


def hint(hint_id: int = 1, *, user: str = "tuser", queue: str | None = "batch",
         received: datetime = T0, req: Request | None = None, count: int = 1,
         source: str | None = "192.0.2.10") -> DemandHint:
    return DemandHint(id=hint_id, received=received, user=user, queue=queue,
                      request=req if req is not None else request(), count=count,
                      source=source)


def intent(intent_id: int = 1, kind: IntentKind = IntentKind.KILL,
           target: str | None = None) -> Intent:
    return Intent(id=intent_id, kind=kind, created=T0, target=target)


def snapshot(*, jobs=(), nodes=(), instances=(), records=(), hints=(), intents=(),
             pool_health: dict[str, PoolHealth] | None = None,
             quotas: dict[str, Quota] | None = None, sleeping: bool = False,
             with_slots: Policy | None | str = "default",
             hint_strikes: HintStrikes = HintStrikes()) -> Snapshot:
    """`with_slots`: add the empty slot entries of every pool of that policy (default: of
    `policy()`), as a running system has them; None adds none."""
    if with_slots == "default":
        with_slots = policy()
    node_list = list(nodes) if nodes is not None else None
    if with_slots is not None and node_list is not None:
        named = {n.name for n in node_list}
        for p in with_slots.pools:
            node_list += [Node(slot, frozenset({"down", "offline"}), p.slot_np, p.properties,
                               note="dynamictorque: slot, no instance")
                          for slot in p.slot_names if slot not in named]
    return Snapshot(jobs=tuple(jobs) if jobs is not None else None,
                    nodes=tuple(node_list) if node_list is not None else None,
                    instances=tuple(instances) if instances is not None else None,
                    records=tuple(records), hints=tuple(hints), intents=tuple(intents),
                    pool_health=pool_health or {}, quotas=quotas or {}, sleeping=sleeping,
                    hint_strikes=hint_strikes)
