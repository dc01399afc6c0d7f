"""The emulated cluster: the TORQUE emulator and FakeNova on one clock, played together as a
real cluster's VMs would play them (pbs_mom starts once the instance is up and announced).

The demo, the simulator and the scenario tests run on it; the composition root
(dtserver/bootstrap.py) builds it when the config selects the emulator and fake drivers.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Callable, Sequence

from dtserver.batch.torque_commands import CommandResult
from dtserver.clock import Clock
from dtserver.fakes.nova import FakeNova
from dtserver.fakes.nova_resources import FakeServer
from dtserver.fakes.torque.server import TorqueEmulator
from dtserver.model import Flavor, Quota, announces_entry

# FakeNova's flavors for the demo, the simulator and the fake driver.
DEMO_FLAVORS = (
    Flavor("m1.small", cores=2, mem_mb=4096, id="1"),
    Flavor("m1.medium", cores=4, mem_mb=8192, id="2"),
    Flavor("m1.large", cores=8, mem_mb=16384, id="3"),
)
DEMO_IMAGE = "155d900f-4e14-4e4c-a73d-069cbf4541e6"


class LockedRunner:
    """Serialises access to the in-process emulator shared by several threads."""

    def __init__(self, emulator: TorqueEmulator, lock: threading.RLock) -> None:
        self.emulator = emulator
        self.lock = lock

    def run(self, argv: Sequence[str], *, stdin: bytes | None = None,
            timeout: float | None = None) -> CommandResult:
        with self.lock:
            return self.emulator.run(argv, stdin=stdin, timeout=timeout)


@dataclass
class FakeWorld:
    """The emulated cluster: TORQUE and Nova on one clock, with each ACTIVE instance's
    pbs_mom reporting to the emulated server as a real worker's would after cloud-init."""

    clock: Clock
    emulator: TorqueEmulator
    nova: FakeNova
    lock: threading.RLock

    def runner(self) -> LockedRunner:
        return LockedRunner(self.emulator, self.lock)


def build_world(clock: Clock, *, flavors: Sequence[Flavor] = DEMO_FLAVORS,
                boot_delay: float | Callable[[], float] = 60.0, quota: Quota = Quota(),
                scheduler_iteration: float = 600.0) -> FakeWorld:
    lock = threading.RLock()
    emulator = TorqueEmulator(clock, scheduler_iteration=scheduler_iteration)
    nova = FakeNova(clock, flavors=flavors, images=(DEMO_IMAGE,), quota=quota,
                    boot_delay=boot_delay)

    def mom_starts(server: FakeServer) -> None:
        # From microversion 2.47 a server embeds its flavor's vcpus and ram, not its id.
        with lock:
            emulator.mom_up(server.name, int(server.flavor["vcpus"]), int(server.flavor["ram"]))

    def mom_stops(server: FakeServer) -> None:
        with lock:
            emulator.mom_down(server.name)

    play_worker_user_data(nova, mom_starts, mom_stops)
    return FakeWorld(clock, emulator, nova, lock)


def play_worker_user_data(nova: FakeNova, mom_starts: Callable[[FakeServer], None],
                          mom_stops: Callable[[FakeServer], None]) -> None:
    """What deploy/cloud-init/worker-user-data.yaml.tmpl does on a real instance: pbs_mom
    starts once the instance is ACTIVE and its node entry is announced in its metadata,
    and stops with the instance."""
    def maybe_start(server: FakeServer) -> None:
        if server.status == "ACTIVE" and announces_entry(server.metadata):
            mom_starts(server)

    nova.on_active.append(maybe_start)
    nova.on_metadata.append(maybe_start)
    nova.on_delete.append(mom_stops)
