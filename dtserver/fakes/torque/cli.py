"""The TORQUE CLI emulator: qsub, qstat, pbsnodes, qmgr and qdel as real executables over
one TorqueEmulator whose state lives in a directory shared by every process (its home,
persistence.py).

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
import logging
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Callable, Sequence

from dtserver.batch.torque_commands import CommandResult
from dtserver.clock import SystemClock
from dtserver.fakes.torque.persistence import (
    CONTROL_COMMAND, HOME_VARIABLE, EmulatorHome, EmulatorHomeError, init_home, open_server)
from dtserver.fakes.torque.qsub import QsubUsageError, parse_qsub_options, script_file_refusal

log = logging.getLogger(__name__)

CLIENT_COMMANDS = ("qsub", "qstat", "pbsnodes", "qmgr", "qdel")

_ADMIN_REJECT = 255          # the filter's exit(-1)
_REJECTED = ("qsub: Your job has been administratively rejected by the queueing system.\n"
             "qsub: There may be a more detailed explanation prior to this notice.\n")
_FILTER_FAILED = "qsub: submit filter returned an error code, aborting job submission.\n"


@dataclass(frozen=True)
class FilterOutcome:
    status: int
    script: bytes            # the filter's stdout: the new job script


# --- qsub and its submit filter --------------------------------------------------------------


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


# --- executables ----------------------------------------------------------------------------


def install_bin(directory: Path, *, home: EmulatorHome | None = None) -> tuple[Path, ...]:
    """Write the five client commands and `dt-torque-emulator` into `directory`: scripts
    run by this interpreter that call main(). With `home` they always use that home;
    without, they read $DT_TORQUE_EMULATOR_HOME when they run."""
    directory.mkdir(parents=True, exist_ok=True)
    pin = f"os.environ[{HOME_VARIABLE!r}] = {str(home.path.resolve())!r}\n" if home else ""
    text = (f"#!{sys.executable}\n"
            f'"""TORQUE CLI emulator command, written by `{CONTROL_COMMAND} install-bin`."""\n'
            "import os\nimport sys\n\n" + pin +
            "from dtserver.fakes.torque.cli import main\n\nsys.exit(main())\n")
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
