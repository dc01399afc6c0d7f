"""A stand-in for the `pbs` module that OpenPBS gives its hooks, just as far as ours uses it.

Shaped after OpenPBS's pbs.v1 module: `pbs.event()` returns the event, whose `job` has
attributes that are None when unset and a `Resource_List` with `keys()` and item access;
`accept()` and `reject()` end the hook by raising SystemExit; `pbs.logmsg(level, text)`
writes the server log; `pbs.hook_config_filename` is the imported config, if any.
"""
from __future__ import annotations

import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LOG_DEBUG = 4
LOG_WARNING = 3
LOG_ERROR = 2
QUEUEJOB = 0


class ResourceList:
    def __init__(self, **values: str | None) -> None:
        self._values = dict(values)

    def keys(self) -> list[str]:
        return list(self._values)

    def __getitem__(self, name: str) -> str | None:
        return self._values.get(name)


@dataclass
class Job:
    Resource_List: ResourceList = field(default_factory=ResourceList)
    queue: str | None = None
    Account_Name: str | None = None
    Job_Name: str | None = None
    Job_Owner: str | None = None
    euser: str | None = None
    array_indices_submitted: str | None = None
    Hold_Types: str | None = "n"
    depend: str | None = None
    Execution_Time: int | None = None


@dataclass
class Event:
    job: Job
    requestor: str = "alice"
    requestor_host: str = "login1.example.org"
    type: int = QUEUEJOB
    outcome: str | None = None            # "accept" or "reject"
    message: str | None = None            # what reject() told the submitter

    def accept(self, ecode: int = 0) -> None:
        self.outcome = "accept"
        raise SystemExit(str(ecode))

    def reject(self, message: str = "", ecode: int = 255) -> None:
        self.outcome = "reject"
        self.message = message
        raise SystemExit(str(ecode))


def pbs_module(event: Event,
               config: Path | None) -> tuple[types.ModuleType, list[tuple[int, str]]]:
    """A `pbs` module serving `event`, and the list its logmsg() appends to."""
    logged: list[tuple[int, str]] = []
    module = types.ModuleType("pbs")
    attributes: dict[str, Any] = {
        "LOG_DEBUG": LOG_DEBUG, "LOG_WARNING": LOG_WARNING, "LOG_ERROR": LOG_ERROR,
        "QUEUEJOB": QUEUEJOB,
        "event": lambda: event,
        "logmsg": lambda level, text: logged.append((level, text)),
        "hook_config_filename": str(config) if config is not None else None,
    }
    for name, value in attributes.items():
        setattr(module, name, value)
    return module, logged
