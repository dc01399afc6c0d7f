"""The quick-start demo runs end to end on the embedded defaults: API, reconciler, emulators."""
from __future__ import annotations

import io
import re
import threading
import time
import urllib.request

from dtserver.demo import Demo, DemoOptions


class Output(io.StringIO):
    """Thread-safe enough for one writer and a reader polling getvalue()."""


def test_demo_serves_every_job_answers_status_and_drains_back_to_nothing():
    out = Output()
    demo = Demo(DemoOptions(duration=40, speed=360, port=0, boot_delay=60), out)
    result: list[int] = []
    runner = threading.Thread(target=lambda: result.append(demo.run()))
    runner.start()
    status = ""
    for _ in range(200):   # bounded: about 20 s
        found = re.search(r"curl (http://127\.0\.0\.1:\d+)/status", out.getvalue())
        if found and "launch " in out.getvalue():
            with urllib.request.urlopen(found.group(1) + "/status", timeout=5) as response:
                status = response.read().decode()
            break
        time.sleep(0.1)
    runner.join(timeout=120)
    assert not runner.is_alive() and result == [0]
    assert "vnode-" in status
    text = out.getvalue()
    assert "every job ran and every instance is gone: done" in text
    launched = int(re.search(r"instances launched\s+(\d+)", text).group(1))
    deleted = int(re.search(r"instances deleted\s+(\d+)", text).group(1))
    started, done = map(int, re.search(r"jobs started / done\s+(\d+) / (\d+)", text).groups())
    assert launched == deleted > 0
    assert started == done > 0
    assert re.search(r"drain\s+vnode-\d+ offline", text)
