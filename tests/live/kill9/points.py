"""Kill points. Each start of the reconciler is armed (tests/live/kill9_site/sitecustomize.py,
loaded through PYTHONPATH) with kill points: the N-th time the process logs a given line (its
own `dtserver.*` log lines), records a given store event, or writes a given record state
(KINDS lists these steps in the order a node's life passes them). The first point reached
stops the process group on the spot; the harness then SIGKILLs the group (the reconciler
and any TORQUE command it was running) and starts it again. GreedyPlan arms, at every
start, the next occurrence of every kind not yet killed at, so each kill lands on a new
point wherever the lives in flight are; every fifth start is instead killed at a random
moment, with no trigger at all.
"""
from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Sequence

PLACEHOLDER = "127.0.0.2"            # HostsFile's placeholder address for empty slots


@dataclass(frozen=True)
class KillKind:
    """One step of a node's life the reconciler reports: a kill trigger."""

    name: str
    source: str                      # "log" (regex on a dtserver.* message), "event", "state"
    pattern: str
    max_nth: int = 4                 # how many occurrences one process may see
    thread: str | None = None        # log: a regex the logging thread's name must match


# Joins and releases run on the reconciler's background workers ("steps_N", as in
# production); new slots are created by the pass itself, on the main thread.
WORKER = r"^steps"
MAIN = r"^MainThread$"


# In the order a node's life passes them; the comment says where a kill there leaves it.
KINDS: tuple[KillKind, ...] = (
    # the first pass is about to begin
    KillKind("startup", "log", r"^pool catalogue published", max_nth=1),
    # a new slot's name has its placeholder address, its node entry is not created
    KillKind("slot hosts", "log",
             rf"^hosts entry set name=\S+ address={re.escape(PLACEHOLDER)} ", thread=MAIN),
    # the same, `qmgr create node` of the slot about to run
    KillKind("slot create", "log", r"^torque command argv=qmgr -c 'create node .*note=",
             thread=MAIN),
    # the launching record is written, servers.create not sent
    KillKind("create requested", "log", r"^instance create requested "),
    # Nova took servers.create; the record does not know the instance yet
    KillKind("servers.create", "log", r"^instance created id="),
    # the record is booting with its instance id; the launch event not stored
    KillKind("launch", "log", r"^launch host="),
    KillKind("launch event", "event", "launch"),
    # join: the name points at the instance; the slot's entry still exists
    KillKind("join hosts", "log", r"^hosts entry set name=\S+ address=169\.254\."),
    # join or release: `qmgr delete node` about to run
    KillKind("qmgr delete", "log", r"^torque command argv=qmgr -c 'delete node "),
    # join: the slot's entry is deleted, the node's not yet created
    KillKind("join create", "log",
             r"^torque command argv=qmgr -c 'create node \S+ np=\d+,properties=[^,']+'$"),
    # join: the node entry exists; the record is still booting
    KillKind("node joined", "log", r"^node joined "),
    KillKind("join", "log", r"^join host="),
    # the instance was told (metadata) its entry is ready; no event stored
    KillKind("entry told", "log", r"^instance told its node entry is ready"),
    KillKind("entry", "event", "entry"),
    # the record turned idle or busy; the scheduler not yet poked
    KillKind("ready", "log", r"^ready host="),
    KillKind("poke", "log", r"^scheduler poked"),
    KillKind("busy", "state", "busy"),
    KillKind("idle", "state", "idle"),
    # the drain is recorded, `pbsnodes -o` not run
    KillKind("drain recorded", "state", "drain"),
    # the node is offline in TORQUE; the record not yet offline
    KillKind("offlined", "log", r"^node offlined "),
    KillKind("drain", "event", "drain"),
    # the record is deleting; the node entry not yet released
    KillKind("deleting", "state", "deleting"),
    # release: the node's entry is deleted, its name back at the placeholder, no slot yet
    KillKind("release hosts", "log",
             rf"^hosts entry set name=\S+ address={re.escape(PLACEHOLDER)} ", thread=WORKER),
    KillKind("release create", "log", r"^torque command argv=qmgr -c 'create node .*note=",
             thread=WORKER),
    # the slot is back; servers.delete not sent
    KillKind("released", "log", r"^node released "),
    # the instance is ours (checked); servers.delete about to be sent
    KillKind("delete requested", "log", r"^instance delete requested "),
    # servers.delete sent and recorded
    KillKind("delete sent", "event", "delete"),
    # a re-created slot offlined again
    KillKind("slot", "log", r"^node slot registered "),
    # the record is deleted; no event stored
    KillKind("deleted", "log", r"^deleted host="),
    KillKind("deleted event", "event", "deleted"),
)
KIND_BY_NAME = {kind.name: kind for kind in KINDS}
RANDOM = "random"


@dataclass(frozen=True)
class KillPoint:
    """The nth occurrence of a step kind in one process."""

    kind: str
    nth: int = 1

    @property
    def label(self) -> str:
        return f"{self.kind}#{self.nth}"


@dataclass(frozen=True)
class Arm:
    """What one start of the reconciler is armed with: kill points (the first one reached
    kills it), or a SIGKILL `after` seconds."""

    points: tuple[KillPoint, ...] = ()
    after: float | None = None


class GreedyPlan:
    """Every start is armed with the next occurrence of every step kind not yet killed at
    (kind#1 of each, then kind#2 once kind#1 was hit, ... up to the kind's max_nth); the
    first one the reconciler reaches kills it. So each kill is at a new point, and the
    points follow the lives in flight wherever they are. Every `random_every`-th start is
    killed at a random moment instead."""

    def __init__(self, rng: random.Random, *, random_every: int = 5,
                 kinds: Sequence[KillKind] = KINDS) -> None:
        self.rng = rng
        self.random_every = random_every
        self.kinds = kinds
        self.next_nth = {kind.name: 1 for kind in kinds}
        self.starts = 0

    def arm(self) -> Arm:
        self.starts += 1
        pending = tuple(KillPoint(kind.name, self.next_nth[kind.name]) for kind in self.kinds
                        if self.next_nth[kind.name] <= kind.max_nth)
        if not pending or (self.random_every and self.starts % self.random_every == 0):
            return Arm(after=round(self.rng.uniform(0.5, 9.0), 2))
        return Arm(points=pending)

    def hit(self, point: KillPoint) -> None:
        self.next_nth[point.kind] = point.nth + 1


# The reconciler's log lines, with the thread (configured through log_format).
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s %(threadName)s %(message)s"


def step_after(text: str) -> str | None:
    """The last step (a log-kind) the reconciler logged in `text`: where a kill without a
    trigger landed."""
    last = None
    kinds = [(kind.name, re.compile(kind.pattern), re.compile(kind.thread or ""))
             for kind in KINDS if kind.source == "log"]
    for line in text.splitlines():
        # "<date> <time> LEVEL logger thread message"
        parts = line.split(" ", 5)
        if len(parts) < 6 or not parts[3].startswith("dtserver"):
            continue
        for name, regex, thread in kinds:
            if regex.search(parts[5]) and thread.search(parts[4]):
                last = name
                break
    return last
