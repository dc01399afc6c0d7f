"""The one request-grammar parser: TORQUE and PBS Pro resource strings to `Request`.

The service, the TORQUE adapter, the emulator and the planner all read requests through
this module, so a job means the same thing everywhere. The grammar follows TORQUE 6.1
(adaptivecomputing/torque: Libattr/attr_fn_size.c `to_size`, attr_fn_time.c `decode_time`,
server/array_func.c `parse_array_request`) and the PBS Pro `select`/`place` forms.

Everything is pure and cached on strings: the planner re-reads the same few request
strings for up to 100k jobs per pass. Every bad input raises `RequestError` naming the
offending text; sizes are bounded so hostile input cannot blow up the planner.
"""
from __future__ import annotations

import dataclasses
import re
from functools import lru_cache
from typing import Callable, Mapping, Sequence

from dtserver.model import ArraySpec, Chunk, DtError, Request

MAX_COUNT = 100_000         # node slices of one request (and of one '+' part)
MAX_CORES = 100_000         # cores (and GPUs) of one node slice
MAX_SPEC_CHARS = 8_192      # longer strings are refused before parsing (and never cached)
MAX_ARRAY_INDEX = 99_999    # TORQUE's PBS_MAXJOBARRAY
_MAX_BYTES = 2**64 - 1      # TORQUE refuses sizes that overflow an unsigned long
_MAX_SECONDS = 2**63 - 2    # TORQUE's PBS_MAX_TIME (LONG_MAX - 1)
# TORQUE counts a "word" as sizeof(int), 4 bytes on every Linux ABI, 64-bit included
# (resmom/linux/mom_mach.c getsize: "sizeof(word) = sizeof(int)").
WORD_BYTES = 4
_MIB = 2**20

_SHIFTS = {"": 0, "k": 10, "m": 20, "g": 30, "t": 40, "p": 50}
# Explicit [0-9] and re.ASCII: int() would accept other Unicode digits, TORQUE does not.
_SIZE = re.compile(r"([0-9]{1,20})([kmgtp]?)([bw]?)", re.ASCII | re.IGNORECASE)
_DIGITS = re.compile(r"[0-9]+", re.ASCII)
_MAX_DIGITS = 18             # longer numbers are out of every bound; int() never sees them
_FRACTION = re.compile(r"[0-9]{0,9}", re.ASCII)
_RESOURCE_ITEM = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*=(.*)", re.ASCII | re.DOTALL)
_HOSTNAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*", re.ASCII)
_PROPERTY = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*", re.ASCII)
# GPU modes ride on a nodes part next to gpus=N (`2:ppn=4:gpus=2:exclusive_process`);
# they set how the mom configures the GPUs, they are not node properties.
_GPU_MODES = frozenset({"exclusive_thread", "exclusive_process", "exclusive", "default",
                        "shared", "reseterr"})
# `#excl`/`#shared` after a nodes spec only say whether TORQUE may put OTHER jobs on the
# same nodes; this job still needs the same slices, so the size we plan is unchanged.
_NODE_SHARING_SUFFIXES = frozenset({"excl", "shared"})
_PLACE_ARRANGEMENTS = frozenset({"free", "pack", "scatter", "vscatter"})
_PLACE_SHARING = frozenset({"excl", "shared", "exclhost"})
_TRUE_WORDS = frozenset({"true", "t", "yes", "y", "1"})
# PBS Pro chunk resources that do not change the size of a node slice.
_SELECT_IGNORED_INTS = frozenset({"mpiprocs", "ompthreads"})

# The Resource_List keys a Request is built from, in the order of _build_request's arguments.
_REQUEST_KEYS = ("select", "place", "nodes", "neednodes", "procs", "ncpus",
                 "mem", "vmem", "pmem", "pvmem", "walltime")


class RequestError(DtError):
    """A resource request that cannot be understood; the message names the bad text."""


_Fail = Callable[[str], RequestError]   # builds an error that names the whole spec


def _show(text: str) -> str:
    """Quote user text for a message, cut short so hostile input cannot flood logs."""
    return repr(text if len(text) <= 120 else text[:117] + "...")


def _checked_text(text: object, what: str) -> str:
    if not isinstance(text, str):
        raise RequestError(f"{what} must be text, got {type(text).__name__}")
    if len(text) > MAX_SPEC_CHARS:
        raise RequestError(f"{what} is {len(text)} characters long; at most {MAX_SPEC_CHARS}")
    return text.strip()


def _bounded_int(text: str, what: str, *, low: int, high: int) -> int:
    if _DIGITS.fullmatch(text) is None:
        raise RequestError(f"{what} must be a whole number, got {_show(text)}")
    if len(text) > _MAX_DIGITS or not low <= int(text) <= high:
        raise RequestError(f"{what} must be between {low} and {high}, got {_show(text)}")
    return int(text)


# --- string-level helpers ----------------------------------------------------------------

def _parse_size_bytes(text: str) -> int:
    return _parse_checked_size(_checked_text(text, "size"))


@lru_cache(maxsize=1024)
def _parse_checked_size(spec: str) -> int:
    match = _SIZE.fullmatch(spec)
    if match is None:
        raise RequestError(
            f"size {_show(spec)} is not a number with an optional unit "
            "(b, kb, mb, gb, tb, pb, or w, kw, mw, gw, tw, pw for words)")
    digits, prefix, unit = match.groups()
    value = int(digits) << _SHIFTS[prefix.lower()]
    if unit.lower() == "w":
        value *= WORD_BYTES
    if value > _MAX_BYTES:
        raise RequestError(f"size {_show(spec)} is too large")
    return value


def _bytes_to_mb(value: int) -> int:
    return -(-value // _MIB)


def parse_size_mb(text: str) -> int:
    """A TORQUE size in whole MiB, rounded up: "2gb" -> 2048, "1" (bytes) -> 1.

    Integer plus optional k/m/g/t/p and optional b (bytes) or w (words of 4 bytes),
    case-insensitive; no unit means bytes, as in TORQUE's to_size().
    """
    return _bytes_to_mb(_parse_size_bytes(text))


def parse_walltime(text: str) -> int:
    """Seconds from TORQUE's time form `[[[DD:]HH:]MM:]SS[.fff]` or plain seconds.

    As in TORQUE's decode_time(), fields are not range-checked ("90:00" is 90 minutes) and a
    fraction of half a second or more rounds up.
    """
    return _parse_checked_walltime(_checked_text(text, "walltime"))


@lru_cache(maxsize=1024)
def _parse_checked_walltime(spec: str) -> int:
    whole, dot, fraction = spec.partition(".")
    fields = whole.split(":")
    expected = "a time as [[[DD:]HH:]MM:]SS, e.g. 01:30:00"
    if len(fields) > 4 or any(_DIGITS.fullmatch(field) is None or len(field) > _MAX_DIGITS
                              for field in fields):
        raise RequestError(f"walltime {_show(spec)} is not {expected}")
    if dot and _FRACTION.fullmatch(fraction) is None:
        raise RequestError(f"walltime {_show(spec)} is not {expected}")
    numbers = [int(field) for field in fields]
    days = numbers.pop(0) if len(numbers) == 4 else 0
    seconds = 0
    for number in numbers:
        seconds = seconds * 60 + number
    seconds += days * 86_400
    if dot and int(fraction[:3].ljust(3, "0")) >= 500:
        seconds += 1
    if seconds > _MAX_SECONDS:
        raise RequestError(f"walltime {_show(spec)} is too long")
    return seconds


def parse_array_spec(text: str) -> ArraySpec:
    """qsub -t: "1-3", "0-99%5", "1,3,5-7", "7". size = number of indices.

    As TORQUE: indices 0..99999, ranges must not overlap, "%N" limits how many run at once
    and a bare "%" means the server's limit (None here).
    """
    return _parse_checked_array_spec(_checked_text(text, "array request"))


@lru_cache(maxsize=1024)
def _parse_checked_array_spec(spec: str) -> ArraySpec:
    ranges_text, percent, limit_text = spec.partition("%")
    slot_limit = None
    if percent and limit_text:
        slot_limit = _bounded_int(limit_text, f"array request {_show(spec)}: slot limit",
                                  low=1, high=MAX_ARRAY_INDEX + 1)
    if not ranges_text:
        raise RequestError(f"array request {_show(spec)} has no indices, e.g. 1-10 or 1,3,5-7")
    ranges = []
    for token in ranges_text.split(","):
        start_text, dash, end_text = token.strip().partition("-")
        what = f"array request {_show(spec)}: index"
        start = _bounded_int(start_text, what, low=0, high=MAX_ARRAY_INDEX)
        end = _bounded_int(end_text, what, low=0, high=MAX_ARRAY_INDEX) if dash else start
        if end < start:
            raise RequestError(f"array request {_show(spec)}: range {_show(token)} runs backwards")
        ranges.append((start, end))
    ranges.sort()
    for (_, previous_end), (start, _) in zip(ranges, ranges[1:]):
        if start <= previous_end:
            raise RequestError(f"array request {_show(spec)}: index {start} is given twice")
    return ArraySpec(size=sum(end - start + 1 for start, end in ranges), slot_limit=slot_limit)


# --- qsub -l values ------------------------------------------------------------------------

def parse_qsub_resources(values: Sequence[str]) -> dict[str, str]:
    """Merge every `-l` value, in order, into {resource: value}; a later value wins.

    Callers pass `#PBS -l` lines before command-line `-l` values, since qsub lets the command
    line override the script. A comma separates resources only when `key=` follows it, so a
    comma inside a value stays there. Unknown keys are kept: the caller decides what matters.
    """
    if isinstance(values, str):
        raise RequestError("resources must be a list of -l values, not one string")
    merged: dict[str, str] = {}
    for value in values:
        text = _checked_text(value, "-l value")
        items: list[tuple[str, list[str]]] = []
        for piece in text.split(","):
            item = _RESOURCE_ITEM.fullmatch(piece)
            if item is not None:
                items.append((item.group(1), [item.group(2)]))
            elif items and piece.strip():
                items[-1][1].append(piece)
            else:
                raise RequestError(f"-l {_show(text)}: {_show(piece)} is not resource=value")
        for key, pieces in items:
            merged[key] = ",".join(pieces).strip()
            if not merged[key]:
                raise RequestError(f"-l {_show(text)}: {key} has no value")
    return merged


# --- nodes= (TORQUE) -------------------------------------------------------------------------

def parse_nodes_spec(text: str, *, key: str = "nodes") -> tuple[Chunk, ...]:
    """`N[:ppn=M][:gpus=G][:prop...][+...]` or `host[:ppn=M]...` -> one Chunk per '+' part.

    `key` only names the resource in error messages (neednodes holds the same grammar).
    """
    return _parse_nodes_spec(_checked_text(text, key), key)


@lru_cache(maxsize=1024)
def _parse_nodes_spec(spec: str, key: str) -> tuple[Chunk, ...]:
    def fail(problem: str) -> RequestError:
        return RequestError(f"{key}={_show(spec)}: {problem}")

    body, hash_sign, suffix = spec.partition("#")
    if hash_sign and suffix not in _NODE_SHARING_SUFFIXES:
        raise fail(f"unknown suffix {_show('#' + suffix)}; TORQUE knows #excl and #shared")
    if not body:
        raise fail("no node count or host name")
    chunks = []
    for index, part in enumerate(body.split("+"), start=1):
        chunks.append(_parse_nodes_part(part, index, fail))
    total = sum(chunk.count for chunk in chunks)
    if total > MAX_COUNT:
        raise fail(f"asks for {total} nodes; at most {MAX_COUNT}")
    return tuple(chunks)


def _parse_nodes_part(part: str, index: int, fail: _Fail) -> Chunk:
    if not part.strip():
        raise fail(f"part {index} is empty (a stray '+'?)")
    first, *rest = (token.strip() for token in part.split(":"))
    count, hostname = 1, None
    if _DIGITS.fullmatch(first):
        count = _part_int(first, f"node count in part {_show(part)}", fail, low=1, high=MAX_COUNT)
    elif _HOSTNAME.fullmatch(first):
        hostname = first
    else:
        raise fail(f"part {_show(part)} must start with a node count or a host name, "
                   f"not {_show(first)}")
    values: dict[str, int] = {}
    words: list[str] = []
    for token in rest:
        name, equals, value = token.partition("=")
        if not token:
            raise fail(f"part {_show(part)} has an empty field (a stray ':'?)")
        if not equals:
            if _PROPERTY.fullmatch(token) is None:
                raise fail(f"{_show(token)} in part {_show(part)} is not a node property")
            words.append(token)
        elif name in ("ppn", "gpus"):
            if name in values:
                raise fail(f"part {_show(part)} gives {name} twice")
            values[name] = _part_int(value, f"{name} in part {_show(part)}", fail,
                                     low=1 if name == "ppn" else 0, high=MAX_CORES)
        else:
            raise fail(f"{_show(token)} in part {_show(part)} is not supported "
                       "(a nodes part takes ppn=, gpus= and properties)")
    gpus = values.get("gpus", 0)
    if "gpus" in values:
        words = [word for word in words if word not in _GPU_MODES]
    return Chunk(count=count, cores=values.get("ppn", 1), gpus=gpus,
                 properties=frozenset(words), hostname=hostname, distinct=True)


def _part_int(text: str, what: str, fail: _Fail, *, low: int, high: int) -> int:
    try:
        return _bounded_int(text, what, low=low, high=high)
    except RequestError as error:
        raise fail(str(error)) from None


# --- select= and place= (PBS Pro) ------------------------------------------------------------

def parse_select(text: str, place: str | None = None) -> tuple[Chunk, ...]:
    """`[N:]ncpus=M:mem=X:ngpus=G[:res=val...][+...]` with an optional `place` value.

    Chunk-level mem/vmem are per chunk (per node slice). `place=pack` folds the whole job onto
    one node; `scatter`/`vscatter` want distinct nodes; `free` (the default) lets slices share.
    """
    spec = _checked_text(text, "select")
    placement = None if place is None else _checked_text(place, "place")
    return _parse_select(spec, placement)


@lru_cache(maxsize=1024)
def _parse_select(spec: str, place: str | None) -> tuple[Chunk, ...]:
    def fail(problem: str) -> RequestError:
        return RequestError(f"select={_show(spec)}: {problem}")

    if not spec:
        raise fail("no chunks")
    arrangement = _parse_place(place) if place else "free"
    chunks = tuple(_parse_select_chunk(part, index, arrangement != "free", fail)
                   for index, part in enumerate(spec.split("+"), start=1))
    total = sum(chunk.count for chunk in chunks)
    if total > MAX_COUNT:
        raise fail(f"asks for {total} chunks; at most {MAX_COUNT}")
    if arrangement == "pack":
        return (_packed(chunks, fail),)
    return chunks


def _parse_place(place: str) -> str:
    arrangement = None
    for token in (token.strip() for token in place.split(":")):
        if token in _PLACE_ARRANGEMENTS:
            if arrangement is not None:
                raise RequestError(f"place={_show(place)}: more than one arrangement")
            arrangement = token
        elif token not in _PLACE_SHARING and not token.startswith("group="):
            raise RequestError(
                f"place={_show(place)}: {_show(token)} is not free, pack, scatter, vscatter, "
                "excl, shared, exclhost or group=RESOURCE")
    return arrangement or "free"


def _parse_select_chunk(part: str, index: int, distinct: bool, fail: _Fail) -> Chunk:
    if not part.strip():
        raise fail(f"chunk {index} is empty (a stray '+'?)")
    tokens = [token.strip() for token in part.split(":")]
    count = 1
    if _DIGITS.fullmatch(tokens[0]):
        count = _part_int(tokens.pop(0), f"count of chunk {_show(part)}", fail,
                          low=1, high=MAX_COUNT)
    cores, gpus, mem_bytes, hostname = 1, 0, 0, None
    properties = set()
    seen = set()
    for token in tokens:
        name, equals, value = token.partition("=")
        if not equals or not name or not value:
            raise fail(f"{_show(token)} in chunk {_show(part)} is not resource=value")
        if name in seen:
            raise fail(f"chunk {_show(part)} gives {name} twice")
        seen.add(name)
        if name == "ncpus":
            cores = _part_int(value, f"ncpus in chunk {_show(part)}", fail, low=1, high=MAX_CORES)
        elif name == "ngpus":
            gpus = _part_int(value, f"ngpus in chunk {_show(part)}", fail, low=0, high=MAX_CORES)
        elif name in ("mem", "vmem"):
            mem_bytes = max(mem_bytes, _size_in(value, name, part, fail))
        elif name == "host":
            if _HOSTNAME.fullmatch(value) is None:
                raise fail(f"{name} {_show(value)} in chunk {_show(part)} is not a host name")
            hostname = value
        elif name in _SELECT_IGNORED_INTS:
            _part_int(value, f"{name} in chunk {_show(part)}", fail, low=0, high=MAX_CORES)
        elif _PROPERTY.fullmatch(name) is None:
            raise fail(f"{_show(name)} in chunk {_show(part)} is not a resource name")
        elif value.lower() in _TRUE_WORDS:
            # PBS Pro expresses node properties as boolean custom resources (CLOUD=True);
            # other custom resources (false booleans, licences, scratch) do not size a slice.
            properties.add(name)
    return Chunk(count=count, cores=cores, mem_mb=_bytes_to_mb(mem_bytes), gpus=gpus,
                 properties=frozenset(properties), hostname=hostname, distinct=distinct)


def _size_in(value: str, what: str, part: str, fail: _Fail) -> int:
    try:
        return _parse_size_bytes(value)
    except RequestError as error:
        raise fail(f"{what} in chunk {_show(part)}: {error}") from None


def _packed(chunks: tuple[Chunk, ...], fail: _Fail) -> Chunk:
    hosts = {chunk.hostname for chunk in chunks if chunk.hostname is not None}
    if len(hosts) > 1:
        raise fail("place=pack needs one node but names several hosts: "
                   + ", ".join(sorted(hosts)))
    cores = sum(chunk.count * chunk.cores for chunk in chunks)
    gpus = sum(chunk.count * chunk.gpus for chunk in chunks)
    if cores > MAX_CORES or gpus > MAX_CORES:
        raise fail(f"place=pack needs {cores} cores and {gpus} GPUs on one node; "
                   f"at most {MAX_CORES}")
    return Chunk(count=1, cores=cores, gpus=gpus,
                 mem_mb=sum(chunk.count * chunk.mem_mb for chunk in chunks),
                 properties=frozenset().union(*(chunk.properties for chunk in chunks)),
                 hostname=hosts.pop() if hosts else None, distinct=True)


# --- the whole request ---------------------------------------------------------------------

def parse_resource_list(resources: Mapping[str, str], *, array: str | None = None) -> Request:
    """A Request from a TORQUE Resource_List (qstat -x) or parse_qsub_resources() output.

    Node slices come from the first of: select (+place), nodes, neednodes (a queue default;
    a copy of nodes when both exist), procs (N one-core slices that may share nodes),
    ncpus (one slice of N cores), else one one-core slice; nodect is ignored, and so is
    place without select (it only arranges select chunks).
    Memory per slice is the largest of: mem and vmem (per job) spread evenly over all
    slices, rounded up; pmem and pvmem (per process) times the slice's cores; and for
    select, the chunk's own mem/vmem. With select, job-wide mem/vmem count only when no
    chunk asks for memory, because PBS Pro derives the job-wide value by summing chunks.
    """
    values = []
    for key in _REQUEST_KEYS:
        value = resources.get(key)
        if value is not None and not isinstance(value, str):
            raise RequestError(f"{key} must be text, got {type(value).__name__}")
        if value is not None and len(value) > MAX_SPEC_CHARS:
            raise RequestError(f"{key} is {len(value)} characters long; at most {MAX_SPEC_CHARS}")
        values.append(value)
    if array is not None and not isinstance(array, str):
        raise RequestError(f"array request must be text, got {type(array).__name__}")
    return _build_request(*values, array)


@lru_cache(maxsize=1024)
def _build_request(select: str | None, place: str | None, nodes: str | None,
                   neednodes: str | None, procs: str | None, ncpus: str | None,
                   mem: str | None, vmem: str | None, pmem: str | None, pvmem: str | None,
                   walltime: str | None, array: str | None) -> Request:
    if select is not None:
        chunks = parse_select(select, place)
    elif nodes is not None:
        chunks = parse_nodes_spec(nodes, key="nodes")
    elif neednodes is not None:
        chunks = parse_nodes_spec(neednodes, key="neednodes")
    elif procs is not None:
        count = _bounded_int(procs.strip(), "procs", low=1, high=MAX_COUNT)
        chunks = (Chunk(count=count, cores=1, distinct=False),)
    elif ncpus is not None:
        chunks = (Chunk(count=1, cores=_bounded_int(ncpus.strip(), "ncpus", low=1,
                                                     high=MAX_CORES)),)
    else:
        chunks = (Chunk(count=1, cores=1),)

    job_bytes = max(_optional_size(mem, "mem"), _optional_size(vmem, "vmem"))
    if select is not None and any(chunk.mem_mb for chunk in chunks):
        job_bytes = 0
    per_process_bytes = max(_optional_size(pmem, "pmem"), _optional_size(pvmem, "pvmem"))
    if job_bytes or per_process_bytes:
        slices = sum(chunk.count for chunk in chunks)
        spread_mb = _bytes_to_mb(-(-job_bytes // slices))
        chunks = tuple(_with_memory(chunk, spread_mb, per_process_bytes) for chunk in chunks)

    return Request(
        chunks=chunks,
        walltime_seconds=None if walltime is None else parse_walltime(walltime),
        array=None if array is None else parse_array_spec(array))


def _optional_size(text: str | None, key: str) -> int:
    if text is None:
        return 0
    try:
        return _parse_size_bytes(text)
    except RequestError as error:
        raise RequestError(f"{key}: {error}") from None


def _with_memory(chunk: Chunk, spread_mb: int, per_process_bytes: int) -> Chunk:
    mem_mb = max(chunk.mem_mb, spread_mb, _bytes_to_mb(per_process_bytes * chunk.cores))
    return dataclasses.replace(chunk, mem_mb=mem_mb)
