"""The wakeup path is a FIFO, nothing else: the reconciler refuses anything else at start,
and the API writes only to a FIFO, never following a link and never blocking."""
from __future__ import annotations

import logging
import os
import stat
import threading

import pytest

from dtserver.wakeup import wake_reconciler
from dtserver.model import DtError
from dtserver.wakeup import Wakeup


def test_a_plain_file_at_the_wakeup_path_is_refused_naming_the_path(tmp_path):
    path = tmp_path / "wakeup"
    path.write_text("left here by someone\n")

    with pytest.raises(DtError) as caught:
        Wakeup(path)

    assert str(path) in str(caught.value) and "FIFO" in str(caught.value)
    assert path.read_text() == "left here by someone\n"      # refused, not removed


def test_a_link_to_a_fifo_is_refused_too(tmp_path):
    fifo = tmp_path / "elsewhere"
    os.mkfifo(fifo)
    (tmp_path / "wakeup").symlink_to(fifo)

    with pytest.raises(DtError, match="FIFO"):
        Wakeup(tmp_path / "wakeup")


def test_the_fifo_is_made_writable_by_the_api_group_whatever_the_umask(tmp_path):
    old = os.umask(0o077)
    try:
        wakeup = Wakeup(tmp_path / "wakeup")
    finally:
        os.umask(old)
    try:
        mode = os.lstat(tmp_path / "wakeup").st_mode
        assert stat.S_ISFIFO(mode) and stat.S_IMODE(mode) == 0o620
    finally:
        wakeup.close()


def test_a_wait_on_the_fifo_waits_until_told(tmp_path):
    """What a plain file broke: a wait with nothing written returns only at its timeout."""
    wakeup = Wakeup(tmp_path / "wakeup")
    stop = threading.Event()
    try:
        assert wakeup.pending() is False
        assert wakeup.wait(0.2, stop) is False
        assert wake_reconciler(tmp_path / "wakeup")
        assert wakeup.pending() is True and wakeup.wait(5, stop) is True
        assert wakeup.pending() is False
    finally:
        wakeup.close()


def test_the_api_never_writes_into_a_plain_file(tmp_path, caplog):
    path = tmp_path / "wakeup"
    path.write_text("")
    caplog.set_level(logging.WARNING, logger="dtserver.wakeup")

    assert wake_reconciler(path) is False
    assert wake_reconciler(path) is False

    assert path.read_bytes() == b""
    warnings = [record.getMessage() for record in caplog.records]
    assert len(warnings) == 1 and str(path) in warnings[0] and "FIFO" in warnings[0]


def test_the_api_does_not_follow_a_link_to_a_fifo(tmp_path):
    fifo = tmp_path / "elsewhere"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    (tmp_path / "wakeup").symlink_to(fifo)
    try:
        assert wake_reconciler(tmp_path / "wakeup") is False
        assert os.read(reader, 16) == b""                    # no writer came, nothing written
    finally:
        os.close(reader)


def test_a_full_pipe_does_not_block_the_writer(tmp_path):
    path = tmp_path / "wakeup"
    os.mkfifo(path)
    reader = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    filler = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
    try:
        with pytest.raises(BlockingIOError):
            while True:
                os.write(filler, b"\0" * 65536)
        assert wake_reconciler(path) is False               # returns at once: EAGAIN
    finally:
        os.close(filler)
        os.close(reader)


def test_a_fifo_of_an_older_version_gets_the_api_groups_write_bit(tmp_path):
    os.mkfifo(tmp_path / "wakeup", 0o600)
    os.chmod(tmp_path / "wakeup", 0o600)

    Wakeup(tmp_path / "wakeup").close()

    assert stat.S_IMODE(os.lstat(tmp_path / "wakeup").st_mode) == 0o620
