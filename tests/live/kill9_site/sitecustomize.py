"""The kill -9 harness's triggers, loaded into the reconciler process it tests (and only there).

tests/live/kill9/reconciler.py starts the production entry point, `dtserver-reconciler -c
CONF`, with this directory on PYTHONPATH and its kill points in $DT_KILL9_TRIGGER (JSON):

    {"fd": FD, "points": [{"label": "...", "source": "log" | "event" | "state",
                           "pattern": "...", "nth": N}, ...]}

- log: a message of a `dtserver.*` logger matches the regular expression `pattern`
  (the reconciler's own log lines, as they are emitted), logged on a thread whose name
  matches the optional regular expression `thread`;
- event: the store recorded an event of kind `pattern` (SqliteStore.add_event returned);
- state: the store wrote a node record with state `pattern` (or, for "drain", a drain).

When one point sees its N-th match in this process, the trigger writes the point's label
to FD (a pipe the harness reads) and stops its whole process group (SIGSTOP): the
reconciler, its threads and any TORQUE command it is running freeze exactly there. The
harness then SIGKILLs the group. Before that the trigger changes nothing: no dtserver code
is edited, nothing is caught or delayed. Without the variable this file does nothing. The
variable is removed from the environment at once, so the TORQUE commands the reconciler
runs (this directory is on their PYTHONPATH too) never arm triggers of their own.
"""
from __future__ import annotations

import json
import logging
import os
import re
import signal
import threading

_VARIABLE = "DT_KILL9_TRIGGER"


class _Point:
    def __init__(self, spec: dict) -> None:
        self.label = spec["label"]
        self.source = spec["source"]
        self.pattern = spec["pattern"]
        self.nth = int(spec["nth"])
        self.regex = re.compile(self.pattern) if self.source == "log" else None
        self.thread = re.compile(spec["thread"]) if spec.get("thread") else None
        self.count = 0


class _Trigger:
    def __init__(self, spec: dict) -> None:
        self.fd = int(spec["fd"])
        os.set_inheritable(self.fd, False)      # the TORQUE commands must not hold the pipe
        self.points = [_Point(item) for item in spec["points"]]
        self.lock = threading.Lock()

    def hit(self, point: _Point, what: str) -> None:
        with self.lock:
            point.count += 1
            if point.count != point.nth:
                return
            os.write(self.fd, f"{point.label}\t{what}\n".encode(errors="replace"))
            # The whole group: this process, its threads, and a TORQUE command in flight.
            os.killpg(os.getpgrp(), signal.SIGSTOP)

    def of(self, source: str) -> list[_Point]:
        return [point for point in self.points if point.source == source]


class _LogWatch(logging.Handler):
    def __init__(self, trigger: _Trigger) -> None:
        super().__init__(logging.DEBUG)
        self.trigger = trigger
        self.points = trigger.of("log")

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        for point in self.points:
            if point.regex.search(message) and (
                    point.thread is None or point.thread.search(record.threadName)):
                self.trigger.hit(point, message[:300])


def _watch_store(trigger: _Trigger) -> None:
    from dtserver.store.sqlite import SqliteStore

    events = trigger.of("event")
    states = trigger.of("state")
    if events:
        original_event = SqliteStore.add_event

        def add_event(self, time, kind, message, **fields):
            original_event(self, time, kind, message, **fields)
            for point in events:
                if kind == point.pattern:
                    trigger.hit(point, f"event {kind}: {message}"[:300])

        SqliteStore.add_event = add_event
    if states:
        original_update = SqliteStore.update_record

        def update_record(self, record_id, **changes):
            updated = original_update(self, record_id, **changes)
            state = getattr(changes.get("state"), "value", None)
            for point in states:
                if state == point.pattern or (point.pattern == "drain"
                                              and changes.get("drain") is not None):
                    trigger.hit(point, f"record {updated.hostname} {point.pattern}")
            return updated

        SqliteStore.update_record = update_record


def _install() -> None:
    text = os.environ.pop(_VARIABLE, None)
    if not text:
        return
    trigger = _Trigger(json.loads(text))
    if trigger.of("log"):
        logging.getLogger("dtserver").addHandler(_LogWatch(trigger))
    if trigger.of("event") or trigger.of("state"):
        _watch_store(trigger)


_install()
