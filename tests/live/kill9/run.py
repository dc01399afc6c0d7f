"""A run: the reconciler started armed by the plan and killed, `kills` times, with the checks
after every kill; then left to settle unharmed and checked at the end; and the results
bench/bench_kill9.py prints.
"""
from __future__ import annotations

import random
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from dtserver.model import NodeState
from dtserver.planning.repair import SLOT_NOTE
from tests.live.kill9.checks import Checker, Snapshot, Violation, describe
from tests.live.kill9.nova import nova_databases
from tests.live.kill9.points import KINDS, RANDOM, Arm, GreedyPlan, KillPoint, step_after
from tests.live.kill9.reconciler import Site
from tests.live.kill9.world import World

@dataclass
class Outcome:
    how: str                          # "triggered", "random", "timeout", "exited"
    label: str                        # the point hit, "random@S", or "timeout@S"
    seconds: float                    # from the start to the kill
    detail: str = ""
    point: KillPoint | None = None    # the point hit
    after_step: str | None = None     # for random/timeout kills: the last step logged

    @property
    def row(self) -> str:
        """The step kind the kill is counted under."""
        if self.point is not None:
            return self.point.kind
        return self.after_step or "(before any step)"


@dataclass
class Results:
    outcomes: list[Outcome] = field(default_factory=list)
    violations: list[Violation] = field(default_factory=list)
    jobs_total: int = 0
    jobs_ok: int = 0
    job_problems: list[str] = field(default_factory=list)
    servers_created: int = 0
    orphans_cleaned: int = 0
    settled: bool = False
    settle_seconds: float = 0.0
    unsettled: str = ""
    wall_seconds: float = 0.0
    world_errors: list[str] = field(default_factory=list)
    exits: list[str] = field(default_factory=list)

    def count(self, what: str) -> int:
        return sum(1 for item in self.violations if item.what == what)

    @property
    def distinct_points(self) -> int:
        """Kills at a point of their own: each point hit (never armed again) and each
        random-time kill."""
        return len({outcome.label for outcome in self.outcomes
                    if outcome.how in ("triggered", "random")})

    @property
    def ok(self) -> bool:
        return (self.settled and not self.violations and self.jobs_ok == self.jobs_total
                and not self.exits and not self.world_errors)

    def table(self) -> str:
        """Kills by the step kind they hit (random and timeout kills: the last step the
        reconciler logged before it)."""
        rows: dict[str, Counter] = {}
        nths: dict[str, set[int]] = {}
        for outcome in self.outcomes:
            rows.setdefault(outcome.row, Counter())[outcome.how] += 1
            if outcome.point is not None:
                nths.setdefault(outcome.row, set()).add(outcome.point.nth)
        order = [kind.name for kind in KINDS]
        lines = [f"{'kill point (step kind)':<24} {'triggered':>9} {'nth':>9} {'random':>7} "
                 f"{'timeout':>7}"]
        total: Counter = Counter()
        for key in sorted(rows, key=lambda name: order.index(name) if name in order else -1):
            counts = rows[key]
            total.update(counts)
            hit = ",".join(str(nth) for nth in sorted(nths.get(key, ()))) or "-"
            lines.append(f"{key:<24} {counts['triggered']:>9} {hit:>9} {counts['random']:>7} "
                         f"{counts['timeout']:>7}")
        lines.append(f"{'total':<24} {total['triggered']:>9} {'':>9} {total['random']:>7} "
                     f"{total['timeout']:>7}")
        return "\n".join(lines)

    def summary(self) -> str:
        return "\n".join([
            f"kills: {len(self.outcomes)} ({self.distinct_points} at distinct points; "
            f"{sum(o.how == 'timeout' for o in self.outcomes)} starts reached no armed "
            f"point in time and were killed anyway)",
            f"leaked instances: {self.count('leak')}",
            f"duplicate creates: {self.count('duplicate')}",
            f"nodes deleted while a job ran: {self.count('busy deleted')}",
            f"orphan node entries: {self.count('orphan entry')}",
            f"jobs run once with exit status 0: {self.jobs_ok}/{self.jobs_total}",
            f"servers created: {self.servers_created}; unexplained while running (orphans "
            f"the reconciler deleted): {self.orphans_cleaned}",
            f"settled: {self.settled} after {self.settle_seconds:.1f} s",
            f"reconciler exits on its own: {len(self.exits)}",
            f"world errors: {len(self.world_errors)}",
            f"wall time: {self.wall_seconds:.1f} s",
        ])


class Kill9Run:
    """Start the reconciler, kill it where `plan` arms it, `kills` times; check after each
    kill; then let it settle and check the end state."""

    def __init__(self, site: Site, *, seed: int, trigger_timeout: float = 30.0,
                 settle_timeout: float = 240.0, world: World | None = None,
                 progress: Callable[[str], None] = lambda line: None) -> None:
        self.site = site
        self.trigger_timeout = trigger_timeout
        self.settle_timeout = settle_timeout
        self.world = world or World(site, random.Random(seed + 1))
        self.checker = Checker(site, nova_databases(site.live))
        self.progress = progress
        self.results = Results()

    def run(self, plan: GreedyPlan, kills: int) -> Results:
        started = time.monotonic()
        self.site.setup()
        self.world.start()
        try:
            for index in range(1, kills + 1):
                arm = plan.arm()
                self.world.min_wave = min(self.site.max_nodes, max(
                    (point.nth for point in arm.points), default=1))
                outcome = self._one(arm)
                if outcome.point is not None:
                    plan.hit(outcome.point)
                self.results.outcomes.append(outcome)
                self.world.kills = index
                snapshot = self.checker.snapshot()
                new = self.checker.check(snapshot, index)
                self.progress(f"kill {index:3d}/{kills} {outcome.how:9s} {outcome.label:<22} "
                              f"{outcome.seconds:5.1f} s"
                              f"{' after ' + outcome.after_step if outcome.after_step else ''}"
                              + "".join(f"\n    VIOLATION {item}" for item in new))
            self._settle()
        finally:
            self.site.kill()
            self.world.stop()
        self.results.violations = self.checker.violations + self.world.violations
        self.results.world_errors = list(self.world.errors)
        self.results.wall_seconds = time.monotonic() - started
        return self.results

    def _one(self, arm: Arm) -> Outcome:
        offset = self.site.log_size()
        incarnation = self.site.start(arm)
        timeout = arm.after if arm.after is not None else self.trigger_timeout
        fired = incarnation.wait_trigger(timeout)
        seconds = time.monotonic() - incarnation.started
        if fired == "":
            # The process ended on its own: not a kill of ours.
            incarnation.process.wait(timeout=30)
            self.site.current = None
            detail = (f"exited {incarnation.process.returncode}; stderr: "
                      f"{_tail(self.site.stderr_path)}")
            self.results.exits.append(detail)
            return Outcome("exited", "exited", seconds, detail)
        self.site.kill()
        self.site.note(f"=== kill9: SIGKILL after {seconds:.2f} s: "
                       f"{fired.replace(chr(9), ' at ') if fired else 'no armed point reached'}")
        if fired is None:
            how = RANDOM if arm.after is not None else "timeout"
            return Outcome(how, f"{how}@{seconds:.2f}s#{len(self.results.outcomes) + 1}",
                           seconds, after_step=step_after(self.site.log_since(offset)))
        label, _, detail = fired.partition("\t")
        point = next(point for point in arm.points if point.label == label)
        return Outcome("triggered", label, seconds, detail, point=point)

    def _settle(self) -> None:
        """No more jobs; the reconciler runs unharmed until nothing is left (or time is
        up), then stops as systemd stops it; then the final checks."""
        self.world.submit = False
        started = time.monotonic()
        self.site.start(None)
        deadline = started + self.settle_timeout
        snapshot = self.checker.snapshot()
        while not self._is_settled(snapshot):
            if time.monotonic() > deadline:
                self.results.unsettled = describe(self.site, snapshot)
                break
            if self.site.current is not None and self.site.current.process.poll() is not None:
                self.results.exits.append(f"exited {self.site.current.process.returncode} "
                                          f"while settling: {_tail(self.site.stderr_path)}")
                self.site.current = None
                break
            time.sleep(1.0)
            snapshot = self.checker.snapshot()
        else:
            self.results.settled = True
        self.results.settle_seconds = time.monotonic() - started
        self.progress(f"settle: {'settled' if self.results.settled else 'NOT settled'} after "
                      f"{self.results.settle_seconds:.1f} s")
        status = self.site.stop()
        if status not in (0, None):
            self.results.exits.append(f"SIGTERM stop exited {status}")
        kills = len(self.results.outcomes)
        snapshot = self.checker.snapshot()
        self.checker.check(snapshot, kills, settled=True)
        self._count_jobs(snapshot)
        self.results.servers_created = len(snapshot.history)
        self.results.orphans_cleaned = sum(
            1 for server_id in self.checker.unexplained
            if server_id not in {server.id for server in snapshot.servers})

    def _is_settled(self, snapshot: Snapshot) -> bool:
        if self.world.pending_jobs() or snapshot.servers:
            return False
        if any(job["state"] != "C" for job in snapshot.jobs.values()):
            return False
        if any(record.state is not NodeState.DELETED for record in snapshot.records):
            return False
        return all(name in snapshot.nodes and snapshot.nodes[name].note == SLOT_NOTE
                   and "offline" in snapshot.nodes[name].state
                   and not snapshot.nodes[name].jobs for name in self.site.slot_names)

    def _count_jobs(self, snapshot: Snapshot) -> None:
        self.results.jobs_total = len(self.world.submitted)
        for job_id in self.world.submitted:
            job = snapshot.jobs.get(job_id)
            if job is None:
                self.results.job_problems.append(f"{job_id}: not in TORQUE")
            elif job["state"] != "C" or job["exit_status"] != 0 or job["start_count"] != 1:
                self.results.job_problems.append(
                    f"{job_id}: state {job['state']}, exit {job['exit_status']}, "
                    f"started {job['start_count']} times")
            else:
                self.results.jobs_ok += 1


def _tail(path: Path, size: int = 1500) -> str:
    try:
        return path.read_text(errors="replace")[-size:]
    except OSError:
        return "(none)"
