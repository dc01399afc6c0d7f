"""Operator event commands (Dynamic Torque's post_* hooks): argument lists, never a shell,
each with a timeout, run off the reconciler's path so a slow or failing one never stalls it.
"""
from __future__ import annotations

import logging
import subprocess
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Sequence

from dtserver.config import EventCommands
from dtserver.model import NodeEvent
from dtserver.redact import mask_argv

log = logging.getLogger(__name__)


def expand(argv: Sequence[str], event: NodeEvent) -> list[str]:
    """Fill Dynamic Torque's positional placeholders ({0} node name, {1} address, {2} record
    id) and named ones ({hostname} {address} {record_id} {pool} {reason}). Each argument is
    formatted on its own, so a value can never split into several arguments."""
    values = dict(hostname=event.hostname, address=event.address, record_id=event.record_id,
                  pool=event.pool, reason=event.reason)
    expanded = []
    for argument in argv:
        try:
            expanded.append(argument.format(event.hostname, event.address, event.record_id,
                                            **values))
        except (IndexError, KeyError, ValueError):
            expanded.append(argument)   # braces that are not ours stay as written
    return expanded


class EventRunner:
    """Runs the configured command of each event in a small worker pool."""

    def __init__(self, commands: EventCommands, *,
                 run: Callable[..., subprocess.CompletedProcess] = subprocess.run,
                 workers: int = 2) -> None:
        self.commands = commands
        self._run = run
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="event")

    def __call__(self, event: NodeEvent) -> None:
        argv = getattr(self.commands, event.name)
        if argv:
            self._pool.submit(self._execute, expand(argv, event), event)

    def _execute(self, argv: list[str], event: NodeEvent) -> None:
        try:
            result = self._run(argv, timeout=self.commands.timeout_seconds, check=False,
                               stdin=subprocess.DEVNULL, capture_output=True)
        except subprocess.TimeoutExpired:
            log.warning("event command timed out event=%s host=%s argv=%s timeout=%s",
                        event.name, event.hostname, mask_argv(argv),
                        self.commands.timeout_seconds)
            return
        except OSError as error:
            # The error's text repeats the program path only, never the arguments.
            log.warning("event command failed to start event=%s host=%s argv=%s error=%s",
                        event.name, event.hostname, mask_argv(argv), error)
            return
        if result.returncode != 0:
            log.warning("event command failed event=%s host=%s argv=%s status=%d stderr=%s",
                        event.name, event.hostname, mask_argv(argv), result.returncode,
                        result.stderr.decode(errors="replace").strip()[:500])
        else:
            log.info("event command done event=%s host=%s", event.name, event.hostname)

    def close(self, wait: bool = True) -> None:
        self._pool.shutdown(wait=wait)
