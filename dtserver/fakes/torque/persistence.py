"""Where the CLI emulator keeps its one server: a directory shared by every process.

The directory (`$DT_TORQUE_EMULATOR_HOME`, the emulator's TORQUE_HOME) holds:
- server.json: the emulator's options, its clock and the whole server state. Each command
  loads it, answers and saves it back (atomic replace) under an exclusive lock on
  server.lock, so concurrent commands run one after the other as a real server's would.
- torque.cfg: read by qsub alone, as TORQUE's client does; only SUBMITFILTER is used.
"""
from __future__ import annotations

import fcntl
import json
import logging
import os
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Iterator

from dtserver.clock import FakeClock, SystemClock
from dtserver.fakes.torque.server import TorqueEmulator
from dtserver.model import DtError

log = logging.getLogger(__name__)

HOME_VARIABLE = "DT_TORQUE_EMULATOR_HOME"
CONTROL_COMMAND = "dt-torque-emulator"
STATE_FILE = "server.json"
CONFIG_FILE = "torque.cfg"
LOCK_FILE = "server.lock"

_FORMAT = 1


class EmulatorHomeError(DtError):
    """The emulator's home is not set, not initialised, or holds something else."""


@dataclass(frozen=True)
class EmulatorHome:
    path: Path

    @classmethod
    def from_environment(cls) -> EmulatorHome:
        value = os.environ.get(HOME_VARIABLE)
        if not value:
            raise EmulatorHomeError(f"{HOME_VARIABLE} is not set")
        return cls(Path(value))

    @property
    def state_file(self) -> Path:
        return self.path / STATE_FILE

    @property
    def config_file(self) -> Path:
        return self.path / CONFIG_FILE

    @property
    def lock_file(self) -> Path:
        return self.path / LOCK_FILE

    def submit_filter(self) -> str | None:
        """torque.cfg's SUBMITFILTER path (the first one), or None."""
        try:
            lines = self.config_file.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return None
        for line in lines:
            words = line.split(None, 1)
            if len(words) == 2 and words[0] == "SUBMITFILTER":
                return words[1].strip()
        return None


@dataclass(frozen=True)
class LoadedServer:
    """The emulator loaded from a home; `clock` is None when it follows real time."""

    emulator: TorqueEmulator
    clock: FakeClock | None



def init_home(home: EmulatorHome, *, simulated_start: datetime | None = None,
              submit_filter: str | None = None, hosts_file: Path | None = None,
              force: bool = False, **options: Any) -> None:
    """Create a fresh server in `home`: TorqueEmulator(**options), on real time unless
    `simulated_start` is given. `hosts_file`: node names must appear in it (qmgr says
    "Unknown node" otherwise), as the real server needs them to resolve; None: any name.
    Raises EmulatorHomeError if a server exists there, unless `force`."""
    home.path.mkdir(parents=True, exist_ok=True)
    with _locked(home):
        if home.state_file.exists() and not force:
            raise EmulatorHomeError(f"{home.state_file} exists (use --force to start over)")
        document = {"format": _FORMAT, "options": options,
                    "hosts_file": str(hosts_file) if hosts_file else None,
                    "clock": simulated_start.isoformat() if simulated_start else None,
                    "state": None}
        clock = FakeClock(simulated_start) if simulated_start else None
        emulator = _new_emulator(document, clock)
        _save(home, document, LoadedServer(emulator, clock))
    _write_config(home, submit_filter)
    log.info("emulator home created path=%s simulated_start=%s", home.path, simulated_start)


@contextmanager
def open_server(home: EmulatorHome, *, simulate: bool = False) -> Iterator[LoadedServer]:
    """The server of `home`, locked against every other command until the block ends and
    then saved; an exception leaves the saved state as it was. `simulate` switches a
    real-time server to a simulated clock starting now."""
    if not home.state_file.exists():
        raise _no_server(home)
    with _locked(home):
        document = _load(home)
        clock = None
        if document["clock"] is not None:
            clock = FakeClock(datetime.fromisoformat(document["clock"]))
        elif simulate:
            clock = FakeClock(SystemClock().now())
        try:
            emulator = TorqueEmulator.from_state(clock or SystemClock(), document["state"],
                                                 **_constructor_options(document))
        except (TypeError, ValueError) as error:
            raise EmulatorHomeError(f"{home.state_file}: {error}") from error
        server = LoadedServer(emulator, clock)
        yield server
        _save(home, document, server)


@contextmanager
def _locked(home: EmulatorHome) -> Iterator[None]:
    try:
        descriptor = os.open(home.lock_file, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as error:
        raise EmulatorHomeError(f"cannot open {home.lock_file}: {error.strerror}") from error
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)             # closing releases the lock


def _load(home: EmulatorHome) -> dict[str, Any]:
    try:
        document = json.loads(home.state_file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise _no_server(home) from None
    except (OSError, ValueError) as error:
        raise EmulatorHomeError(f"cannot read {home.state_file}: {error}") from error
    if not isinstance(document, dict) or document.get("format") != _FORMAT:
        raise EmulatorHomeError(f"{home.state_file} is not a format {_FORMAT} server file")
    return document


def _no_server(home: EmulatorHome) -> EmulatorHomeError:
    return EmulatorHomeError(f"no server in {home.path} (run `{CONTROL_COMMAND} init`)")


def _save(home: EmulatorHome, document: dict[str, Any], server: LoadedServer) -> None:
    document = {**document, "state": server.emulator.to_state(),
                "clock": server.clock.now().isoformat() if server.clock else None}
    descriptor, temporary = tempfile.mkstemp(prefix=f".{STATE_FILE}.", dir=home.path)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            os.fchmod(handle.fileno(), 0o644)     # mkstemp's 0600 would shut out other users
            json.dump(document, handle, separators=(",", ":"))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, home.state_file)
    except BaseException:
        os.unlink(temporary)
        raise


def _new_emulator(document: dict[str, Any], clock: FakeClock | None) -> TorqueEmulator:
    return TorqueEmulator(clock or SystemClock(), **_constructor_options(document))


def _constructor_options(document: dict[str, Any]) -> dict[str, Any]:
    options = dict(document["options"])
    if document["hosts_file"]:
        options["resolvable"] = _resolver(Path(document["hosts_file"]))
    return options


def _resolver(hosts_file: Path) -> Callable[[str], bool]:
    """A name resolves when a line of the hosts file lists it (read at each qmgr create)."""
    def resolvable(name: str) -> bool:
        try:
            lines = hosts_file.read_text(encoding="utf-8").splitlines()
        except OSError:
            return False
        return any(name in line.partition("#")[0].split()[1:] for line in lines)
    return resolvable


def _write_config(home: EmulatorHome, submit_filter: str | None) -> None:
    """An empty torque.cfg if there is none; with `submit_filter`, its SUBMITFILTER line
    replaces any earlier one and the other lines are kept."""
    if submit_filter is None:
        home.config_file.touch()
        return
    try:
        lines = home.config_file.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        lines = []
    lines = [line for line in lines if line.split(None, 1)[:1] != ["SUBMITFILTER"]]
    lines.append(f"SUBMITFILTER {submit_filter}")
    home.config_file.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
