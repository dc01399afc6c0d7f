"""`dtadmin info --watch S` and `-i -c S`: redraw in place like watch(1), exit 0 on Ctrl-C."""
from __future__ import annotations

import contextlib
import io
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Iterator

import pytest

from admin.cli import CLEAR_SCREEN, watch
from admin.client import ServiceDown
from tests.admin.conftest import Service
from tests.admin.test_cli import fill

ROOT = Path(__file__).resolve().parents[2]


def interrupt_on_call(calls: int):
    seen = []

    def sleep(seconds: float) -> None:
        seen.append(seconds)
        if len(seen) == calls:
            raise KeyboardInterrupt

    return sleep, seen


def test_watch_redraws_until_ctrl_c_and_exits_0() -> None:
    out = io.StringIO()
    frames = iter(["first\n", "second\n", "third\n"])
    sleep, seen = interrupt_on_call(3)

    assert watch(lambda: next(frames), 2.0, out, sleep=sleep) == 0

    text = out.getvalue()
    assert text.count(CLEAR_SCREEN) == 3
    assert text.index("first") < text.index("second") < text.index("third")
    assert "Every 2s: dtadmin info" in text
    assert seen == [2.0, 2.0, 2.0]


def test_watch_shows_a_failure_in_the_frame_and_keeps_going() -> None:
    out = io.StringIO()
    answers = iter([ServiceDown("cannot reach the API"), "back again\n"])

    def draw() -> str:
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    sleep, _ = interrupt_on_call(2)

    assert watch(draw, 1.0, out, sleep=sleep) == 0

    text = out.getvalue()
    assert "dtadmin: cannot reach the API" in text
    assert text.index("cannot reach") < text.index("back again")


@pytest.mark.parametrize("argv", [["info", "--watch", "0.2"], ["-i", "-c", "0.2"]])
def test_info_watch_redraws_a_live_service_and_ctrl_c_exits_0(
        service: Service, tmp_path: Path, argv: list[str]) -> None:
    fill(service.store)
    env = {**os.environ, "DTADMIN_CONFIG": str(tmp_path / "absent.conf")}
    errors = tmp_path / "stderr.txt"
    output = bytearray()
    with errors.open("wb") as stderr, interruptible_children(), subprocess.Popen(
            [sys.executable, "-m", "admin", "--url", service.url, *argv], cwd=ROOT, env=env,
            stdout=subprocess.PIPE, stderr=stderr) as process:
        reader = threading.Thread(target=read_into, args=(process.stdout, output), daemon=True)
        reader.start()
        # Bounds for a machine busy with other work: a starting interpreter or a frame can
        # take many seconds there; a healthy run ends in about one.
        try:
            deadline = time.monotonic() + 90
            while output.count(CLEAR_SCREEN.encode()) < 3 and time.monotonic() < deadline:
                time.sleep(0.05)
            process.send_signal(signal.SIGINT)
            code = process.wait(timeout=60)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=60)
        reader.join(timeout=60)
    assert code == 0, errors.read_text()
    text = output.decode()
    assert text.count(CLEAR_SCREEN) >= 3
    last_frame = text.split(CLEAR_SCREEN)[-1]
    assert "Every 0.2s: dtadmin info" in last_frame
    assert "cloud-001" in last_frame


@contextlib.contextmanager
def interruptible_children() -> Iterator[None]:
    """Children started meanwhile take Ctrl-C as at a terminal. A shell without job control
    starts background commands (this suite, when run so) with SIGINT ignored, children
    inherit that, and Python then never raises KeyboardInterrupt; a handled signal is reset
    to its default in an exec'd child."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def read_into(stream: IO[bytes], output: bytearray) -> None:
    """Collect a child's stdout as it comes: the frames arrive while it runs."""
    while chunk := stream.read1(4096):
        output += chunk
