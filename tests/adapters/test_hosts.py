"""HostsFile: our names in a delimited block, every other byte of the file untouched."""
from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from dtserver.batch.hosts import BEGIN_MARKER, END_MARKER, HostsFile, HostsFileError
from dtserver.batch.torque_commands import InvalidArgument

SYSTEM_LINES = (
    "127.0.0.1\tlocalhost\r\n"          # CRLF must survive as is
    "# a comment the admin wrote\n"
    "10.1.0.1 head head.example.org\n"
    "::1 localhost ip6-localhost\n"
)


def hosts_file(tmp_path: Path, text: str = SYSTEM_LINES, mode: int = 0o644) -> Path:
    path = tmp_path / "hosts"
    path.write_bytes(text.encode())
    path.chmod(mode)
    return path


def block(*entries: str) -> str:
    return "".join(f"{line}\n" for line in (BEGIN_MARKER, *entries, END_MARKER))


def test_set_appends_our_block_and_keeps_every_other_byte(tmp_path):
    path = hosts_file(tmp_path)
    HostsFile(path).set("cloud-001", "10.0.0.5")
    assert path.read_bytes() == (SYSTEM_LINES + block("10.0.0.5\tcloud-001")).encode()


def test_set_after_a_last_line_without_newline_starts_the_block_on_its_own_line(tmp_path):
    path = hosts_file(tmp_path, "127.0.0.1 localhost")
    HostsFile(path).set("cloud-001", "10.0.0.5")
    assert path.read_text() == "127.0.0.1 localhost\n" + block("10.0.0.5\tcloud-001")


def test_set_updates_an_entry_in_place_and_keeps_lines_after_the_block(tmp_path):
    after = "192.168.0.9 printer\n"
    path = hosts_file(tmp_path, SYSTEM_LINES + block("10.0.0.5\tcloud-001",
                                                     "10.0.0.6\tcloud-002") + after)
    HostsFile(path).set("cloud-001", "10.0.0.9")
    assert path.read_bytes().decode() == SYSTEM_LINES + block(
        "10.0.0.9\tcloud-001", "10.0.0.6\tcloud-002") + after


def test_address_matches_exact_names_only(tmp_path):
    path = hosts_file(tmp_path, block("10.0.0.5\tcloud-0010", "10.0.0.6 cloud-001"))
    hosts = HostsFile(path)
    assert hosts.address("cloud-001") == "10.0.0.6"
    assert hosts.address("cloud-0010") == "10.0.0.5"
    assert hosts.address("cloud-00") is None
    assert hosts.address("head") is None          # outside our block: not ours


def test_remove_drops_only_that_exact_name(tmp_path):
    path = hosts_file(tmp_path, SYSTEM_LINES + block("10.0.0.5\tcloud-0010",
                                                     "10.0.0.6\tcloud-001"))
    hosts = HostsFile(path)
    hosts.remove("cloud-001")
    assert hosts.entries() == {"cloud-0010": "10.0.0.5"}
    assert path.read_bytes().decode().startswith(SYSTEM_LINES)


def test_remove_of_an_absent_name_leaves_the_file_alone(tmp_path):
    path = hosts_file(tmp_path)
    before = path.stat()
    HostsFile(path).remove("cloud-001")
    assert path.read_bytes() == SYSTEM_LINES.encode()
    assert path.stat().st_ino == before.st_ino


def test_set_of_the_same_address_does_not_rewrite(tmp_path):
    path = hosts_file(tmp_path, block("10.0.0.5\tcloud-001"))
    inode = path.stat().st_ino
    HostsFile(path).set("cloud-001", "10.0.0.5")
    assert path.stat().st_ino == inode


def test_rewrite_is_atomic_keeps_the_mode_and_leaves_no_temporary_file(tmp_path):
    path = hosts_file(tmp_path, mode=0o640)
    inode = path.stat().st_ino
    HostsFile(path).set("cloud-001", "10.0.0.5")
    assert path.stat().st_ino != inode          # replaced, never truncated in place
    assert path.stat().st_mode & 0o7777 == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hosts"]


def test_missing_file_is_created_with_only_our_block(tmp_path):
    hosts = HostsFile(tmp_path / "hosts")
    assert hosts.address("cloud-001") is None
    hosts.set("cloud-001", "10.0.0.5")
    assert (tmp_path / "hosts").read_text() == block("10.0.0.5\tcloud-001")


def test_placeholder_address_is_validated_and_exposed(tmp_path):
    assert HostsFile(tmp_path / "hosts").placeholder_address == "127.0.0.2"
    with pytest.raises(HostsFileError):
        HostsFile(tmp_path / "hosts", placeholder_address="localhost")


@pytest.mark.parametrize("text", [
    BEGIN_MARKER + "\n10.0.0.5 cloud-001\n",
    "10.0.0.5 cloud-001\n" + END_MARKER + "\n",
    block("10.0.0.5 a") + block("10.0.0.6 b"),
    END_MARKER + "\n" + BEGIN_MARKER + "\n",
], ids=["no-end", "no-begin", "two-blocks", "reversed"])
def test_damaged_markers_raise_and_leave_the_file_untouched(tmp_path, text):
    path = hosts_file(tmp_path, text)
    with pytest.raises(HostsFileError):
        HostsFile(path).set("cloud-001", "10.0.0.9")
    assert path.read_text() == text


@pytest.mark.parametrize("name", ["bad name", "-x", "a\nb", "", "cloud-001\n10.6.6.6 head",
                                  "cloud-001\t", "cloud-001\x00"])
def test_invalid_names_are_refused(tmp_path, name):
    with pytest.raises(InvalidArgument):
        HostsFile(hosts_file(tmp_path)).set(name, "10.0.0.5")


@pytest.mark.parametrize("address", [
    "10.0.0", "host", "10.0.0.5 evil", "",
    # Python's ipaddress takes anything after '%' as an IPv6 scope id, newlines included.
    "fe80::1%eth0\n10.6.6.6 head", "fe80::1%eth0", "10.0.0.5\n", "fd00::5\x00"])
def test_invalid_addresses_are_refused(tmp_path, address):
    path = hosts_file(tmp_path)
    with pytest.raises(HostsFileError):
        HostsFile(path).set("cloud-001", address)
    assert path.read_bytes() == SYSTEM_LINES.encode()


def test_ipv6_addresses_are_accepted(tmp_path):
    hosts = HostsFile(hosts_file(tmp_path))
    hosts.set("cloud-001", "fd00::5")
    assert hosts.address("cloud-001") == "fd00::5"


def test_a_name_also_defined_outside_our_block_is_reported(tmp_path, caplog):
    hosts = HostsFile(hosts_file(tmp_path))
    with caplog.at_level(logging.WARNING, logger="dtserver.batch.hosts"):
        hosts.set("head", "10.0.0.5")
    assert "outside our block" in caplog.text
    assert hosts.address("head") == "10.0.0.5"


def test_unreadable_file_raises_hosts_file_error(tmp_path):
    path = tmp_path / "hosts"
    path.mkdir()
    with pytest.raises(HostsFileError):
        HostsFile(path).address("cloud-001")


def test_missing_directory_raises_hosts_file_error(tmp_path):
    missing_dir = tmp_path / "gone" / "hosts"
    with pytest.raises(HostsFileError):
        HostsFile(missing_dir).set("cloud-001", "10.0.0.5")
    assert not os.path.exists(missing_dir)


def test_the_writer_refuses_a_line_that_would_split_even_past_set(tmp_path):
    # Second line of defence: whatever reaches the writer, no entry may carry whitespace
    # or control characters into the file.
    path = hosts_file(tmp_path)
    hosts = HostsFile(path)
    with pytest.raises(HostsFileError):
        hosts._write([], {"cloud-001": "fe80::1%eth0\n10.6.6.6 head"}, [])
    with pytest.raises(HostsFileError):
        hosts._write([], {"cloud-001\n10.6.6.6 head": "10.0.0.5"}, [])
    assert path.read_bytes() == SYSTEM_LINES.encode()
