#!/usr/bin/env python3
"""Prepare a TORQUE 6.1 server for dynamictorque: print (--dry-run) or run the qmgr commands.

Run it as root (or another TORQUE manager) on the pbs_server host, with the Python that
has dynamictorque installed, and the configuration the reconciler will use:

    /opt/dynamictorque/bin/python deploy/torque/setup_torque.py \\
        -c /etc/dynamictorque/dynamic_torque.conf --flavor m1.large=4 \\
        --manager dynamictorque --dry-run

What it sets up (facts from the real TORQUE 6.1 server, docs/torque-facts.md):
- the managers: pbs_server names a client by the name its source address resolves to, so
  `--manager USER` means USER on this host as pbs_server names it: the name that
  torque_server's address resolves back to (`localhost` when that is 127.0.0.1), not
  `$(hostname)`. USER@HOST is taken as given, for a reconciler on another host;
- `auto_node_np = True`: a node's np follows the CPUs its mom reports, whatever the slot said;
- the cloud queue with `resources_default.neednodes = 1:CLOUD` (a bare `CLOUD` is taken as
  a host name by pbs_sched and the job never runs); it applies to jobs without a nodes spec;
- one node entry per possible instance of each pool (its slots: PREFIX001 ... up to
  max_nodes, np = the pool's largest flavor), because qsub refuses a `-l nodes=` request
  that no existing node entry could satisfy. With hosts_file set, slot names first get a
  placeholder address in our block of that file: qmgr refuses names that do not resolve.
  Each is created with the slot note ("dynamictorque: slot, no instance"): the server
  refuses `pbsnodes -N` on a new entry for about 10 s;
- `scheduling = True`, which also starts a scheduling cycle.
It also prints the torque.cfg SUBMITFILTER line for the submit hosts.

Every step may run again: existing queues and node entries are left as they are. Slots
are not marked offline here: the server refuses an offline flag on a new entry until it
has announced the entry to the moms, and then drops the one it was created with, so the
reconciler offlines each unused slot on its first pass after that. Flavor sizes live in
the cloud; give them with --flavor NAME=CORES (or one np for every slot with --slot-np)
so this script needs no cloud credentials.

Exit status: 0 done, 1 a command failed, 2 bad arguments or configuration.
"""
from __future__ import annotations

import argparse
import re
import shlex
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence, TextIO

from dtserver.batch import BatchError
from dtserver.batch.hosts import HostsFile
from dtserver.batch.torque_commands import (
    Runner, SubprocessRunner, create_node_argv, qmgr_argv, start_scheduling_argv,
    validate_properties)
from dtserver.config import Settings, load_settings
from dtserver.model import DtError, Flavor
from dtserver.planning.repair import SLOT_NOTE
from dtserver.policy import Pool

DEFAULT_CONFIG = Path("/etc/dynamictorque/dynamic_torque.conf")
DEFAULT_QUEUE = "cloud"
# Where hooks/README.md installs the submit filter.
DEFAULT_SUBMIT_FILTER = Path("/usr/local/sbin/dynamictorque-submitfilter")
QUEUE_EXISTS = "Queue already exists"
NODE_EXISTS = "Node name already exists"
# Both end up inside a qmgr -c string: no spaces, quotes or commas. TORQUE queue names
# have at most 15 characters; a manager's host part, when given, may hold `*` wildcards.
_QUEUE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,14}")
_MANAGER = re.compile(r"[A-Za-z0-9_.-]+(@[A-Za-z0-9*.-]+)?")

# A host name -> (its address, the first name that address resolves back to).
Resolve = Callable[[str], tuple[str, str]]


class SetupError(DtError):
    """Arguments or configuration this script cannot set TORQUE up from."""


@dataclass(frozen=True)
class Slots:
    """The node entries one pool needs before any of its instances exists."""

    names: tuple[str, ...]
    np: int
    properties: frozenset[str]


@dataclass(frozen=True)
class Step:
    """One TORQUE command; `done_before` is the stderr text that means it already holds."""

    argv: tuple[str, ...]
    done_before: str | None = None


def pool_slots(settings: Settings, *, flavor_cores: Mapping[str, int] | None = None,
               slot_np: int | None = None) -> tuple[Slots, ...]:
    """Each pool's slot names (as the reconciler names them: Pool.slot_names) and np.

    np is `slot_np` when given, else the cores of the pool's largest flavor (Pool.slot_np),
    looked up in `flavor_cores` by flavor name."""
    cores = dict(flavor_cores or {})
    result = []
    for settings_pool in settings.pools:
        missing = [name for name in settings_pool.flavors if name not in cores]
        if slot_np is None and missing:
            raise SetupError(f"pool {settings_pool.name}: the cores of flavor "
                             f"{', '.join(missing)} are unknown: pass --flavor NAME=CORES "
                             "for each, or --slot-np N")
        flavors = tuple(Flavor(name=name, cores=cores[name], mem_mb=0)
                        for name in settings_pool.flavors if name in cores)
        pool = Pool(name=settings_pool.name, flavors=flavors, image=settings_pool.image,
                    properties=settings_pool.properties, max_nodes=settings_pool.max_nodes,
                    name_prefix=settings_pool.name_prefix)
        result.append(Slots(names=pool.slot_names,
                            np=slot_np if slot_np is not None else pool.slot_np,
                            properties=pool.properties))
    return tuple(result)


def shared_properties(slots: Sequence[Slots]) -> tuple[str, ...]:
    """The node properties every pool's nodes carry (CLOUD by default), sorted."""
    if not slots:
        return ()
    common = frozenset.intersection(*(item.properties for item in slots))
    return tuple(sorted(common))


def torque_steps(slots: Sequence[Slots], *, queue: str, queue_properties: Sequence[str],
                 managers: Sequence[str] = ()) -> tuple[Step, ...]:
    """The qmgr commands, in order: managers, auto_node_np, the queue, the slots, scheduling."""
    if not queue_properties:
        raise SetupError("the queue needs a node property every pool has: pass "
                         "--queue-property PROPERTY")
    neednodes = ":".join(("1", *validate_properties(queue_properties)))
    steps = [Step(qmgr_argv(f"set server managers += {manager}")) for manager in managers]
    steps += [
        Step(qmgr_argv("set server auto_node_np = True")),
        Step(qmgr_argv(f"create queue {queue}"), QUEUE_EXISTS),
        Step(qmgr_argv(f"set queue {queue} queue_type = Execution")),
        Step(qmgr_argv(f"set queue {queue} resources_default.neednodes = {neednodes}")),
        Step(qmgr_argv(f"set queue {queue} enabled = True")),
        Step(qmgr_argv(f"set queue {queue} started = True")),
    ]
    steps += [Step(create_node_argv(name, item.np, item.properties, SLOT_NOTE), NODE_EXISTS)
              for item in slots for name in item.names]
    steps.append(Step(start_scheduling_argv()))
    return tuple(steps)


def resolve_forward_and_back(host: str) -> tuple[str, str]:
    """`host`'s address and the first name that address resolves back to, through the
    system resolver, as pbs_server looks names up. Raises OSError when either fails."""
    address = socket.gethostbyname(host)
    return address, socket.gethostbyaddr(address)[0]


def managers_with_hosts(managers: Sequence[str], torque_server: str,
                        resolve: Resolve) -> tuple[tuple[str, ...], str | None]:
    """Each manager as USER@HOST, and how this host's name was found (None when no
    manager needed it).

    A manager without @HOST is a user of this host. pbs_server names a client by the name
    its source address resolves to, and a client here reaches the server at the address
    torque_server resolves to: so HOST is that address's name."""
    users = [manager for manager in managers if "@" not in manager]
    if not users:
        return tuple(managers), None
    try:
        address, host = resolve(torque_server)
    except OSError as error:
        raise SetupError(f"--manager {users[0]}: cannot tell how pbs_server names this "
                         f"host: torque_server {torque_server} must resolve to an address and "
                         f"that address to a name ({error}); fix that or pass "
                         f"--manager {users[0]}@HOST") from error
    how = f"pbs_server names this host {host} (torque_server {torque_server} is {address})"
    return tuple(manager if "@" in manager else f"{manager}@{host}"
                 for manager in managers), how


def submitfilter_line(path: Path) -> str:
    """The torque.cfg line that makes qsub run our submit filter."""
    return f"SUBMITFILTER {path}"


def missing_host_entries(hosts: HostsFile, slots: Sequence[Slots]) -> tuple[str, ...]:
    """Slot names our block of the hosts file does not list yet."""
    listed = hosts.entries()
    return tuple(name for item in slots for name in item.names if name not in listed)


def apply_steps(steps: Sequence[Step], runner: Runner, out: TextIO) -> None:
    """Run each step; stop at the first failure (later steps build on earlier ones)."""
    for step in steps:
        command = shlex.join(step.argv)
        result = runner.run(step.argv)
        if result.status == 0:
            print(f"ok       {command}", file=out)
        elif step.done_before and step.done_before in result.stderr:
            print(f"present  {command}", file=out)
        else:
            raise BatchError(f"{command} exited {result.status}: {result.stderr.strip()}")


def _flavor(text: str) -> tuple[str, int]:
    name, _, cores = text.partition("=")
    if not name or not cores.isdigit() or int(cores) < 1:
        raise argparse.ArgumentTypeError(f"expected NAME=CORES, got {text!r}")
    return name, int(cores)


def _queue_name(text: str) -> str:
    if not _QUEUE_NAME.fullmatch(text):
        raise argparse.ArgumentTypeError(f"expected a queue name (a letter, then at most 14 "
                                         f"letters, digits, '_', '.' or '-'), got {text!r}")
    return text


def _manager(text: str) -> str:
    if not _MANAGER.fullmatch(text):
        raise argparse.ArgumentTypeError(f"expected USER or USER@HOST, got {text!r}")
    return text


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}")
    return int(text)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="setup_torque.py",
        description="Create the cloud queue and the node slots dynamictorque needs.")
    parser.add_argument("-c", "--config", type=Path, default=DEFAULT_CONFIG,
                        help="dynamic_torque.conf (default %(default)s)")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the commands and change nothing")
    parser.add_argument("--flavor", type=_flavor, action="append", default=[],
                        metavar="NAME=CORES", help="cores of a flavor the pools use (repeat)")
    parser.add_argument("--slot-np", type=_positive, metavar="N",
                        help="np of every slot, instead of the largest flavor's cores")
    parser.add_argument("--queue", type=_queue_name, default=DEFAULT_QUEUE,
                        help="the queue whose jobs go to cloud nodes (default %(default)s)")
    parser.add_argument("--queue-property", action="append", default=[], metavar="PROPERTY",
                        help="node property of the queue's default neednodes (repeat); "
                             "default: the properties every pool has")
    parser.add_argument("--manager", type=_manager, action="append", default=[],
                        metavar="USER[@HOST]",
                        help="add a TORQUE manager (repeat): USER on this host, named as "
                             "pbs_server names it (e.g. the reconciler's dynamictorque), "
                             "or USER@HOST as given")
    parser.add_argument("--submit-filter", type=Path, default=DEFAULT_SUBMIT_FILTER,
                        help="installed submit filter, for the torque.cfg line "
                             "(default %(default)s)")
    return parser


def main(argv: Sequence[str] | None = None, *, runner: Runner | None = None,
         resolve: Resolve = resolve_forward_and_back,
         out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    """The command line. `runner` replaces the TORQUE commands (tests pass the emulator),
    `resolve` the name lookups."""
    args = _parser().parse_args(argv)
    try:
        settings = load_settings(args.config)
        if settings.queues and args.queue not in settings.queues:
            raise SetupError(f"torque_queue_to_monitor leaves out queue {args.queue}: its jobs "
                             "would never start nodes; add it there or pass --queue")
        slots = pool_slots(settings, flavor_cores=dict(args.flavor), slot_np=args.slot_np)
        managers, how_host_was_named = managers_with_hosts(args.manager,
                                                           settings.torque_server, resolve)
        steps = torque_steps(slots, queue=args.queue,
                             queue_properties=args.queue_property or shared_properties(slots),
                             managers=managers)
        hosts = HostsFile(settings.hosts_file) if settings.hosts_file else None
        unresolved = missing_host_entries(hosts, slots) if hosts else ()
    except DtError as error:
        print(f"setup_torque.py: {error}", file=err)
        return 2
    mode = "dry run, nothing is changed" if args.dry_run else "applying"
    print(f"# dynamictorque TORQUE setup from {args.config} ({mode})", file=out)
    if not args.manager:
        print("# the reconciler's user must be a TORQUE manager: "
              "--manager dynamictorque adds it", file=out)
    if how_host_was_named:
        print(f"# {how_host_was_named}", file=out)
    if hosts is not None:
        print(f"# hosts file {hosts.path}: {len(unresolved)} slot name(s) get the placeholder "
              f"address {hosts.placeholder_address} until an instance takes them", file=out)
    else:
        print("# no hosts_file: the site DNS must resolve every slot name below", file=out)
    try:
        if args.dry_run:
            for name in unresolved:
                print(f"# hosts: {hosts.placeholder_address}\t{name}", file=out)
            for step in steps:
                print(shlex.join(step.argv), file=out)
        else:
            for name in unresolved:
                hosts.set(name, hosts.placeholder_address)
            apply_steps(steps, runner or SubprocessRunner(
                str(settings.torque_bin_dir) if settings.torque_bin_dir else None,
                timeout=settings.command_timeout), out)
    except DtError as error:
        print(f"setup_torque.py: {error}", file=err)
        return 1
    print("# $TORQUE_HOME/torque.cfg (usually /var/spool/torque/torque.cfg) on every host "
          "that runs qsub, once the filter is installed there:", file=out)
    print(submitfilter_line(args.submit_filter), file=out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
