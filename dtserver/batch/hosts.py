"""Our node names in a delimited block of a hosts file.

pbs_server resolves a node name when the node entry is created ("Unknown node" otherwise),
so a slot needs an address before its instance exists, and a new instance's address must be
in place before the entry is re-created. We own only the lines between the markers; every
other line is kept byte for byte. Each rewrite is atomic (temp file + os.replace).
"""
from __future__ import annotations

import ipaddress
import logging
import os
import tempfile
import threading
from pathlib import Path

from dtserver.batch import BatchError
from dtserver.batch.torque_commands import validate_hostname

log = logging.getLogger(__name__)

BEGIN_MARKER = "# BEGIN dynamictorque"
END_MARKER = "# END dynamictorque"


class HostsFileError(BatchError):
    """The hosts file cannot be read, parsed or rewritten."""


class HostsFile:
    def __init__(self, path: Path, *, placeholder_address: str = "127.0.0.2") -> None:
        self.path = Path(path)
        self.placeholder_address = _validate_address(placeholder_address)
        # Nodes join on several threads at once: each rewrite reads the file it replaces.
        self._lock = threading.Lock()

    def address(self, name: str) -> str | None:
        """The address our block gives `name` (exact name), or None."""
        _, entries, _ = self._read()
        return entries.get(name)

    def entries(self) -> dict[str, str]:
        """Name -> address for every name in our block, in file order."""
        return dict(self._read()[1])

    def set(self, name: str, address: str) -> None:
        validate_hostname(name)
        address = _validate_address(address)
        with self._lock:
            self._set(name, address)

    def _set(self, name: str, address: str) -> None:
        before, entries, after = self._read()
        if entries.get(name) == address:
            return
        for line in before + after:
            if name in _fields(line)[1:]:
                log.warning("hosts name also outside our block name=%s path=%s line=%r",
                            name, self.path, line)
        entries[name] = address
        self._write(before, entries, after)
        log.info("hosts entry set name=%s address=%s path=%s", name, address, self.path)

    def remove(self, name: str) -> None:
        with self._lock:
            before, entries, after = self._read()
            if entries.pop(name, None) is None:
                return
            self._write(before, entries, after)
        log.info("hosts entry removed name=%s path=%s", name, self.path)

    def _read(self) -> tuple[list[str], dict[str, str], list[str]]:
        """Raw lines (endings kept) before our block, our entries, raw lines after it.
        A missing file reads as empty."""
        try:
            with self.path.open(encoding="utf-8", newline="") as stream:
                text = stream.read()
        except FileNotFoundError:
            return [], {}, []
        except (OSError, UnicodeDecodeError) as err:
            raise HostsFileError(f"cannot read {self.path}: {err}") from err
        lines = text.splitlines(keepends=True)
        begins = [i for i, line in enumerate(lines) if line.strip() == BEGIN_MARKER]
        ends = [i for i, line in enumerate(lines) if line.strip() == END_MARKER]
        if not begins and not ends:
            return lines, {}, []
        if len(begins) != 1 or len(ends) != 1 or ends[0] < begins[0]:
            # Guessing where a damaged block ends could delete someone else's lines.
            raise HostsFileError(f"{self.path}: dynamictorque block markers are damaged")
        entries: dict[str, str] = {}
        for line in lines[begins[0] + 1:ends[0]]:
            fields = _fields(line)
            for name in fields[1:]:
                entries.setdefault(name, fields[0])
        return lines[:begins[0]], entries, lines[ends[0] + 1:]

    def _write(self, before: list[str], entries: dict[str, str], after: list[str]) -> None:
        # Second line of defence behind set()'s checks: one entry, one line, always.
        for name, address in entries.items():
            if not _one_field(name) or not _one_field(address):
                raise HostsFileError(f"refusing to write hosts entry {address!r} {name!r}: "
                                     "whitespace or control characters")
        if before and not before[-1].endswith("\n"):
            before = [*before[:-1], before[-1] + "\n"]
        block = [BEGIN_MARKER, *(f"{address}\t{name}" for name, address in entries.items()),
                 END_MARKER]
        text = "".join(before) + "".join(f"{line}\n" for line in block) + "".join(after)
        try:
            mode = self.path.stat().st_mode & 0o7777
        except FileNotFoundError:
            mode = 0o644
        except OSError as err:
            raise HostsFileError(f"cannot stat {self.path}: {err}") from err
        try:
            fd, tmp_name = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.")
        except OSError as err:
            raise HostsFileError(f"cannot write next to {self.path}: {err}") from err
        try:
            with os.fdopen(fd, "w", encoding="utf-8", newline="") as tmp:
                tmp.write(text)
                tmp.flush()
                os.fsync(tmp.fileno())
            os.chmod(tmp_name, mode)
            os.replace(tmp_name, self.path)
        except OSError as err:
            Path(tmp_name).unlink(missing_ok=True)
            raise HostsFileError(f"cannot rewrite {self.path}: {err}") from err


def _fields(line: str) -> list[str]:
    """Address then names of a hosts line, comments dropped."""
    return line.split("#", 1)[0].split()


def _one_field(text: str) -> bool:
    return bool(text) and text.isprintable() and not any(char.isspace() for char in text)


def _validate_address(address: str) -> str:
    """A plain IPv4 or IPv6 address. ipaddress takes anything after '%' as an IPv6 scope
    id, newlines included, and a hosts file has no use for scope ids: refused."""
    if not isinstance(address, str) or "%" in address or not _one_field(address):
        raise HostsFileError(f"invalid address {address!r}")
    try:
        return str(ipaddress.ip_address(address))
    except ValueError as err:
        raise HostsFileError(f"invalid address {address!r}") from err
