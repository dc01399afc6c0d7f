"""The TORQUE CLI emulator: qsub, qstat, pbsnodes, qmgr and qdel as real executables over
one TorqueEmulator whose state lives in a directory shared by every process.

The directory (`$DT_TORQUE_EMULATOR_HOME`, the emulator's TORQUE_HOME) holds:
- server.json: the emulator's options, its clock and the whole server state. Each command
  loads it, answers and saves it back (atomic replace) under an exclusive lock on
  server.lock, so concurrent commands run one after the other as a real server's would.
- torque.cfg: read by qsub alone, as TORQUE's client does; only SUBMITFILTER is used.

The five client commands print what TorqueEmulator.run prints and exit with its status.
qsub runs the submit filter exactly as TORQUE 6.1 does (20_submitfilter.txt,
21_filter_logs_all.txt), before it contacts the server, so a slow filter holds no lock;
like TORQUE's, it refuses a script file with CRLF line ends or bytes outside ASCII before
the filter runs (50_qsub_script_file_checks.txt).
The lookup of a filter at the built-in paths when torque.cfg names none is not emulated.

`dt-torque-emulator` administers a home: `init`, `install-bin DIR` (writes the five
commands, and itself, as small scripts that run this module), `clock` (a simulated clock
that scenario tests jump forward; real time by default), and what the VMs of a real
cluster would do: `mom-up NAME NCPUS`, `mom-down NAME`, `server down|up|restart`.
"""
from __future__ import annotations

import argparse
import fcntl
import json
import logging
import os
import re
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Iterator, Sequence

from dtserver.batch.torque_commands import CommandResult
from dtserver.batch.torque_emulator import (
    QsubUsageError, TorqueEmulator, parse_qsub_options, script_file_refusal)
from dtserver.clock import FakeClock, SystemClock
from dtserver.model import DtError

log = logging.getLogger(__name__)

HOME_VARIABLE = "DT_TORQUE_EMULATOR_HOME"
CONTROL_COMMAND = "dt-torque-emulator"
CLIENT_COMMANDS = ("qsub", "qstat", "pbsnodes", "qmgr", "qdel")
STATE_FILE = "server.json"
CONFIG_FILE = "torque.cfg"
LOCK_FILE = "server.lock"

_FORMAT = 1
_ADMIN_REJECT = 255          # the filter's exit(-1)
_REJECTED = ("qsub: Your job has been administratively rejected by the queueing system.\n"
             "qsub: There may be a more detailed explanation prior to this notice.\n")
_FILTER_FAILED = "qsub: submit filter returned an error code, aborting job submission.\n"


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
class Server:
    """The emulator loaded from a home; `clock` is None when it follows real time."""

    emulator: TorqueEmulator
    clock: FakeClock | None


@dataclass(frozen=True)
class FilterOutcome:
    status: int
    script: bytes            # the filter's stdout: the new job script


# --- the shared state -----------------------------------------------------------------------

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
        _save(home, document, Server(emulator, clock))
    _write_config(home, submit_filter)
    log.info("emulator home created path=%s simulated_start=%s", home.path, simulated_start)


@contextmanager
def open_server(home: EmulatorHome, *, simulate: bool = False) -> Iterator[Server]:
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
        server = Server(emulator, clock)
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


def _save(home: EmulatorHome, document: dict[str, Any], server: Server) -> None:
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


# --- qsub and its submit filter ---------------------------------------------------------------

def filter_command(submit_filter: str, args: Sequence[str]) -> str:
    """The `sh -c` line TORQUE 6.1's qsub builds (21_): each of its arguments in single
    quotes, unescaped, so an argument holding a quote breaks the line and the submission
    (20_). The value after `-C` is backslash-escaped instead (21_: `'-C' \\#FOO`); that
    every character but letters and digits gets a backslash is assumed."""
    words = [submit_filter]
    for index, arg in enumerate(args):
        if index and args[index - 1] == "-C":
            words.append(re.sub(r"([^A-Za-z0-9])", r"\\\1", arg))
        else:
            words.append(f"'{arg}'")
    return " ".join(words)


def run_submit_filter(submit_filter: str, args: Sequence[str], script: bytes) -> FilterOutcome:
    """popen("<filter> '<arg>' ... >/tmp/qsub.XXXXXX", "w") as qsub does: the script on
    stdin, stdout into a temporary file, stderr, cwd and environment straight from qsub."""
    descriptor, output = tempfile.mkstemp(prefix="qsub.")
    os.close(descriptor)
    try:
        # No timeout, on purpose: qsub has none, and a hanging filter hangs it (20_).
        completed = subprocess.run(
            ["sh", "-c", f"{filter_command(submit_filter, args)} >{output}"],
            executable="/bin/sh", input=script, check=False)
        log.info("submit filter done filter=%s status=%d", submit_filter, completed.returncode)
        return FilterOutcome(completed.returncode, Path(output).read_bytes())
    finally:
        os.unlink(output)


def run_qsub(home: EmulatorHome, args: Sequence[str], read_stdin: Callable[[], bytes]
             ) -> CommandResult:
    """qsub: the submit filter from torque.cfg first, outside the server lock, then the
    server. `read_stdin` gives the script when no script file is named."""
    argv = ("qsub", *args)
    submit_filter = home.submit_filter()
    # qsub checks the configured filter before it looks at anything else.
    if submit_filter is not None and not os.path.exists(submit_filter):
        return CommandResult(argv, 1, b"", f'qsub: invalid submit filter: "{submit_filter}"\n')
    # Then a script file that is not plain ASCII text is refused, before the filter runs.
    refusal = script_file_refusal(args)
    if refusal is not None:
        return CommandResult(argv, 1, b"", refusal)
    try:
        options, operands = parse_qsub_options(args)
    except QsubUsageError:
        return _answer(home, argv, None)            # the server prints the usage
    # Usage errors, and -I (which runs the filter another way, not emulated) are answered
    # by the server; so is a script file when there is no filter to give it to.
    if len(operands) > 1 or any(option == "I" for option, _ in options) \
            or (submit_filter is None and operands):
        return _answer(home, argv, None)
    if operands:
        try:
            script = Path(operands[0]).read_bytes()
        except OSError:
            return _answer(home, argv, None)        # the server words the error
    else:
        script = read_stdin()
    if submit_filter is None:
        return _answer(home, argv, script)
    outcome = run_submit_filter(submit_filter, args, script)
    if outcome.status == _ADMIN_REJECT:
        return CommandResult(argv, 1, b"", _REJECTED)
    if outcome.status != 0:
        return CommandResult(argv, 1, b"", _FILTER_FAILED)
    return _answer(home, argv, outcome.script, submit_filter)


def _answer(home: EmulatorHome, argv: Sequence[str], stdin: bytes | None,
            submit_filter: str | None = None) -> CommandResult:
    with open_server(home) as server:
        return server.emulator.run(argv, stdin=stdin, submit_filter=submit_filter)


# --- executables ------------------------------------------------------------------------------

def install_bin(directory: Path, *, home: EmulatorHome | None = None) -> tuple[Path, ...]:
    """Write the five client commands and `dt-torque-emulator` into `directory`: scripts
    run by this interpreter that call main(). With `home` they always use that home;
    without, they read $DT_TORQUE_EMULATOR_HOME when they run."""
    directory.mkdir(parents=True, exist_ok=True)
    pin = f"os.environ[{HOME_VARIABLE!r}] = {str(home.path.resolve())!r}\n" if home else ""
    text = (f"#!{sys.executable}\n"
            f'"""TORQUE CLI emulator command, written by `{CONTROL_COMMAND} install-bin`."""\n'
            "import os\nimport sys\n\n" + pin +
            "from dtserver.batch.torque_cli import main\n\nsys.exit(main())\n")
    written = []
    for name in (*CLIENT_COMMANDS, CONTROL_COMMAND):
        path = directory / name
        temporary = directory / f".{name}.tmp"
        temporary.write_text(text, encoding="utf-8")
        temporary.chmod(0o755)
        os.replace(temporary, path)
        written.append(path)
    return tuple(written)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of every executable: the name it was run as picks the command."""
    words = list(sys.argv if argv is None else argv)
    name = PurePosixPath(words[0]).name if words else CONTROL_COMMAND
    if name in CLIENT_COMMANDS:
        return _client(name, words[1:])
    return _control(words[1:])


def _client(command: str, args: list[str]) -> int:
    try:
        home = EmulatorHome.from_environment()
        if command == "qsub":
            result = run_qsub(home, args, sys.stdin.buffer.read)
        else:
            result = _answer(home, (command, *args), None)
    except EmulatorHomeError as error:
        sys.stderr.write(f"torque emulator: {error}\n")
        return 2
    sys.stdout.buffer.write(result.stdout)
    sys.stdout.flush()
    sys.stderr.write(result.stderr)
    return result.status


def _control(args: list[str]) -> int:
    parsed = _parser().parse_args(args)
    try:
        home = EmulatorHome(parsed.home) if parsed.home else None
        if parsed.command == "install-bin":
            if home is None and os.environ.get(HOME_VARIABLE):
                home = EmulatorHome.from_environment()
            install_bin(parsed.directory, home=home)
            return 0
        home = home or EmulatorHome.from_environment()
        if parsed.command == "init":
            options = {key: value for key, value in (
                ("server_name", parsed.server_name),
                ("scheduler_iteration", parsed.scheduler_iteration),
                ("keep_completed", parsed.keep_completed),
                ("node_down_delay", parsed.node_down_delay),
                ("submit_user", parsed.submit_user)) if value is not None}
            init_home(home, simulated_start=parsed.simulated_clock,
                      submit_filter=parsed.submit_filter, hosts_file=parsed.hosts_file,
                      force=parsed.force, **options)
            return 0
        return _administer(home, parsed)
    except (EmulatorHomeError, ValueError) as error:
        sys.stderr.write(f"{CONTROL_COMMAND}: {error}\n")
        return 1


def _administer(home: EmulatorHome, parsed: argparse.Namespace) -> int:
    moves_clock = parsed.command == "clock" and parsed.action != "show"
    with open_server(home, simulate=moves_clock) as server:
        emulator = server.emulator
        if parsed.command == "clock":
            if server.clock is not None and parsed.action == "advance":
                server.clock.advance(parsed.value)
            elif server.clock is not None and parsed.action == "set":
                server.clock.advance(parsed.value - server.clock.now())
            emulator.advance()
            now = server.clock.now() if server.clock else SystemClock().now()
            mode = "simulated" if server.clock else "real"
            sys.stdout.write(f"{now.isoformat()} {mode}\n")
        elif parsed.command == "mom-up":
            emulator.mom_up(parsed.name, parsed.ncpus, parsed.mem_mb)
        elif parsed.command == "mom-down":
            emulator.mom_down(parsed.name)
        elif parsed.state == "restart":
            emulator.restart()
        else:
            emulator.set_down(parsed.state == "down", trqauthd=parsed.trqauthd)
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=CONTROL_COMMAND,
                                     description="Administer the TORQUE CLI emulator.")
    parser.add_argument("--home", type=Path,
                        help=f"the emulator's directory (default: ${HOME_VARIABLE})")
    commands = parser.add_subparsers(dest="command", required=True)

    init = commands.add_parser("init", help="create a fresh server")
    init.add_argument("--force", action="store_true", help="replace an existing server")
    init.add_argument("--server-name")
    init.add_argument("--scheduler-iteration", type=float, metavar="SECONDS")
    init.add_argument("--keep-completed", type=float, metavar="SECONDS")
    init.add_argument("--node-down-delay", type=float, metavar="SECONDS")
    init.add_argument("--submit-user", metavar="USER", help="owner of qsub's jobs")
    init.add_argument("--hosts-file", type=Path,
                      help="node names must be listed here (default: any name resolves)")
    init.add_argument("--simulated-clock", type=_aware_time, metavar="ISO",
                      help="start a simulated clock at this time (default: real time)")
    init.add_argument("--submit-filter", metavar="PATH", help="torque.cfg SUBMITFILTER")

    install = commands.add_parser("install-bin", help="write the commands into a directory")
    install.add_argument("directory", type=Path)

    clock = commands.add_parser("clock", help="show or move the simulated clock")
    clock_actions = clock.add_subparsers(dest="action")
    clock.set_defaults(action="show")
    clock_actions.add_parser("show")
    advance = clock_actions.add_parser("advance")
    advance.add_argument("value", type=_seconds, metavar="SECONDS")
    set_time = clock_actions.add_parser("set")
    set_time.add_argument("value", type=_aware_time, metavar="ISO")

    mom_up = commands.add_parser("mom-up", help="a node's pbs_mom starts and reports")
    mom_up.add_argument("name")
    mom_up.add_argument("ncpus", type=int)
    mom_up.add_argument("--mem-mb", type=int, default=4096)
    mom_down = commands.add_parser("mom-down", help="a node's pbs_mom dies")
    mom_down.add_argument("name")

    server = commands.add_parser("server", help="stop, start or restart pbs_server")
    server.add_argument("state", choices=("down", "up", "restart"),
                        help="restart: stop and start, reloading the saved node state")
    server.add_argument("--trqauthd", action="store_true", help="trqauthd is down too")
    return parser


def _aware_time(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} has no time zone")
    return moment


def _seconds(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError("time does not run backwards")
    return value


if __name__ == "__main__":
    sys.exit(main())
