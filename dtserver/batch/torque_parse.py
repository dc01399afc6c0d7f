"""Pure parsers of TORQUE 6.1 output (`qstat -x`, `pbsnodes -x`, client stderr) into model values.

No I/O here: callers hand in bytes or a binary stream. Formats are those of the captures in
tests/data/torque/ (taken from a real 6.1.3 server). A document that does not look like them
raises ParseError, which is a BatchUnavailable: garbage output means the state is unknown,
never "no jobs" or "no nodes". One job's bad entry spoils only that job
(51_qsub_control_bytes.txt): TORQUE prints users' bytes raw, so they are made well-formed
before parsing, and a job whose own fields cannot be read is kept as JobState.UNKNOWN.
"""
from __future__ import annotations

import codecs
import logging
import re
import xml.etree.ElementTree as ET
from datetime import datetime, timezone
from typing import BinaryIO, Iterator

from dtserver import nodespec
from dtserver.batch import BatchUnavailable
from dtserver.model import Job, JobState, Node, Request

log = logging.getLogger(__name__)

_NCPUS = re.compile(r"(?:^|,)ncpus=(\d+)(?:,|$)")
_JOB_STATES = {state.value: state for state in JobState if state is not JobState.UNKNOWN}
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
# Bounds a core range such as `0-3`, so odd output cannot make us build a huge set.
_MAX_CORES_PER_NODE = 65_536


class ParseError(BatchUnavailable):
    """TORQUE printed something we cannot read: treat the whole read as failed."""


# --- characters XML 1.0 forbids ------------------------------------------------------------
# TORQUE's XML writer escapes only < > & " ' and prints every other byte of a value as it
# is: a user's `qsub -v X=$'\x01'` (or an exported variable with -V, or a non-UTF-8 byte)
# makes the whole document ill-formed. Such characters become U+FFFD, so only the fields
# that held them change and every other job reads exactly as TORQUE meant it.

_REPLACEMENT = "\ufffd"
_CONTROL_BYTES = bytes(code for code in range(0x20) if code not in (0x09, 0x0A, 0x0D))
_CONTROL_BYTE = re.compile(b"[" + re.escape(_CONTROL_BYTES) + b"]")
_NOT_XML_CHAR = re.compile("[" + re.escape(_CONTROL_BYTES.decode()) + "\ufffe\uffff]")


class _WellFormedReader:
    """A binary stream that yields `raw` with what XML 1.0 forbids replaced by U+FFFD:
    C0 controls but tab, LF and CR; U+FFFE and U+FFFF; bytes that are not UTF-8.

    ASCII chunks without controls, nearly every chunk TORQUE prints, pass as they are;
    the others are decoded, so a character split between two reads stays whole."""

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")

    def read(self, size: int = -1) -> bytes:
        while True:
            chunk = self._raw.read(size)
            # The decoder holds back the start of a character cut at the end of a chunk.
            if chunk.isascii() and not self._decoder.getstate()[0]:
                if len(chunk.translate(None, _CONTROL_BYTES)) != len(chunk):
                    chunk = _CONTROL_BYTE.sub(_REPLACEMENT.encode(), chunk)
                return chunk
            text = self._decoder.decode(chunk, final=not chunk)
            data = _NOT_XML_CHAR.sub(_REPLACEMENT, text).encode()
            if data or not chunk:
                return data


def well_formed(data: bytes) -> bytes:
    """`data` with what XML 1.0 forbids replaced by U+FFFD (see _WellFormedReader)."""
    text = data.decode("utf-8", errors="replace")
    return _NOT_XML_CHAR.sub(_REPLACEMENT, text).encode()


# --- qstat -x ---------------------------------------------------------------------------

def iter_qstat_jobs(stream: BinaryIO, *, queues: frozenset[str] = frozenset()) -> Iterator[Job]:
    """Yield the jobs of a `qstat -x` / `qstat -x -t` document, one at a time.

    Finished <Job> elements are taken out of the tree as soon as they are read, so memory
    stays bounded by one parser chunk whatever the queue length. `queues` (when non-empty)
    keeps only those queues. Characters XML forbids read as U+FFFD; a job whose own
    fields cannot be read comes out as JobState.UNKNOWN, with a warning naming it. Raises
    ParseError on malformed or truncated XML (after the complete jobs before the damage);
    `<Data></Data>` yields nothing.
    """
    try:
        # Only "start" events: half the events of start+end, and the per-event Python
        # loop is what costs on 100k jobs. A <Job> has ended once the next one starts.
        events = iter(ET.iterparse(_WellFormedReader(stream), events=("start",)))
        first = next(events, None)
        if first is None or first[1].tag != "Data":
            raise ParseError("qstat: output is not a <Data> document")
        root = first[1]
        for _, element in events:
            if element.tag == "Job" and len(root) > 1:
                yield from _take_finished(root, root[:-1], queues)
        yield from _take_finished(root, root[:], queues)
    except ET.ParseError as err:
        raise ParseError(f"qstat: malformed XML: {err}") from err


def _take_finished(root: ET.Element, finished: list[ET.Element],
                   queues: frozenset[str]) -> Iterator[Job]:
    del root[:len(finished)]
    for element in finished:
        if element.tag != "Job":
            raise ParseError(f"qstat: unexpected <{element.tag}> in <Data>")
        try:
            job = _job_from_element(element, queues)
        except ParseError as error:
            job = _unreadable_job(element, queues, error)
        if job is not None:
            yield job


def _unreadable_job(element: ET.Element, queues: frozenset[str],
                    error: ParseError) -> Job | None:
    """What can be read of a job whose entry is broken. Dropping it could hide a running
    job from the node it runs on; failing the whole read would let one job blind us."""
    text = element.findtext
    queue = text("queue") or ""
    if queues and queue and queue not in queues:
        return None
    job_id = text("Job_Id") or "(a job without Job_Id)"
    log.warning("qstat: job %s cannot be read, taken as unknown: %s", job_id, error)
    exec_host = text("exec_host")
    return Job(
        id=job_id,
        owner=(text("Job_Owner") or "").split("@", 1)[0],
        queue=queue,
        state=JobState.UNKNOWN,
        created=_EPOCH,
        request=None,
        exec_hosts=parse_exec_host(exec_host) if exec_host else (),
        request_error=f"the job's qstat entry cannot be read: {error}",
    )


def _job_from_element(element: ET.Element, queues: frozenset[str]) -> Job | None:
    # findtext with a plain tag scans the children in C: cheaper than a Python dict.
    text = element.findtext
    job_id = text("Job_Id")
    if not job_id:
        raise ParseError("qstat: <Job> without Job_Id")
    queue = _required(text("queue"), "queue", job_id)
    if queues and queue not in queues:
        return None
    owner = _required(text("Job_Owner"), "Job_Owner", job_id).split("@", 1)[0]
    state_letter = _required(text("job_state"), "job_state", job_id)
    state = _JOB_STATES.get(state_letter)
    if state is None:
        raise ParseError(f"qstat: job {job_id} has unknown job_state {state_letter!r}")
    created = _epoch(_required(text("ctime"), "ctime", job_id), "ctime", job_id)
    start_time = text("start_time")
    resource_list = element.find("Resource_List")
    resources = {} if resource_list is None else {
        child.tag: (child.text or "") for child in resource_list}
    request, request_error = _request(resources, text("job_array_request"))
    exec_host = text("exec_host")
    return Job(
        id=job_id,
        owner=owner,
        queue=queue,
        state=state,
        created=created,
        request=request,
        resources=resources,
        account=text("Account_Name") or None,
        exec_hosts=parse_exec_host(exec_host) if exec_host else (),
        hold_types=text("Hold_Types") or "n",
        depend=text("depend") or None,
        comment=text("comment") or None,
        request_error=request_error,
        started=_epoch(start_time, "start_time", job_id) if start_time else None,
    )


def _required(value: str | None, tag: str, job_id: str) -> str:
    if not value:
        raise ParseError(f"qstat: job {job_id} has no {tag}")
    return value


def _epoch(value: str, tag: str, job_id: str) -> datetime:
    try:
        return datetime.fromtimestamp(int(value), tz=timezone.utc)
    except (ValueError, OverflowError, OSError) as err:
        raise ParseError(f"qstat: job {job_id} has bad {tag} {value!r}") from err


def _request(resources: dict[str, str],
             array: str | None) -> tuple[Request | None, str | None]:
    try:
        return nodespec.parse_resource_list(resources, array=array or None), None
    except nodespec.RequestError as err:
        return None, str(err)


def parse_exec_host(value: str) -> tuple[str, ...]:
    """`vm/0-1+cn01/0` -> ("vm", "cn01"): host names in order, each once."""
    hosts: dict[str, None] = {}
    for part in value.split("+"):
        host = part.split("/", 1)[0].strip()
        if host:
            hosts.setdefault(host)
    return tuple(hosts)


# --- pbsnodes -x ------------------------------------------------------------------------

def parse_pbsnodes_xml(data: bytes) -> tuple[Node, ...]:
    """Nodes of a `pbsnodes -x` document. Raises ParseError on anything malformed,
    including empty output (pbsnodes prints nothing at all when the server is down)."""
    if not data.strip():
        raise ParseError("pbsnodes: empty output")
    try:
        root = ET.fromstring(well_formed(data))
    except ET.ParseError as err:
        raise ParseError(f"pbsnodes: malformed XML: {err}") from err
    if root.tag != "Data":
        raise ParseError(f"pbsnodes: expected <Data>, got <{root.tag}>")
    nodes = []
    for element in root:
        if element.tag != "Node":
            raise ParseError(f"pbsnodes: unexpected <{element.tag}> in <Data>")
        nodes.append(_node_from_element(element))
    return tuple(nodes)


def _node_from_element(element: ET.Element) -> Node:
    fields = {child.tag: (child.text or "") for child in element}
    name = fields.get("name", "").strip()
    if not name:
        raise ParseError("pbsnodes: <Node> without name")
    states = frozenset(flag for flag in fields.get("state", "").split(",") if flag)
    if not states:
        raise ParseError(f"pbsnodes: node {name} has no state")
    try:
        np = int(fields.get("np", ""))
    except ValueError as err:
        raise ParseError(f"pbsnodes: node {name} has bad np {fields.get('np')!r}") from err
    if np < 0:
        raise ParseError(f"pbsnodes: node {name} has negative np")
    status = fields.get("status")
    ncpus = None
    if status is not None:
        match = _NCPUS.search(status)
        ncpus = int(match.group(1)) if match else None
    jobs, used_cores = parse_node_jobs(fields.get("jobs", ""), node=name)
    return Node(
        name=name,
        states=states,
        np=np,
        properties=frozenset(p for p in fields.get("properties", "").split(",") if p),
        jobs=jobs,
        used_cores=used_cores,
        note=fields.get("note") or None,
        has_reported=status is not None,
        ncpus=ncpus,
    )


def parse_node_jobs(value: str, *, node: str = "?") -> tuple[tuple[str, ...], int]:
    """`0-1/1.vm,2/5.vm` -> (("1.vm", "5.vm"), 3): job ids in order, each once, and the
    number of distinct cores they occupy. A job on scattered cores reads `0,2/1.vm`, so a
    core list without `/` belongs to the next entry that has one."""
    jobs: dict[str, None] = {}
    cores: set[int] = set()
    pending: list[str] = []
    for token in value.split(","):
        token = token.strip()
        if not token:
            continue
        core_part, sep, job_id = token.partition("/")
        pending.append(core_part)
        if not sep:
            continue
        if not job_id:
            raise ParseError(f"pbsnodes: node {node} has bad jobs entry {token!r}")
        for core_range in pending:
            cores.update(_core_range(core_range, node))
        pending.clear()
        jobs.setdefault(job_id)
    if pending:
        raise ParseError(f"pbsnodes: node {node} has cores without a job in {value!r}")
    return tuple(jobs), len(cores)


def _core_range(text: str, node: str) -> range:
    low, sep, high = text.partition("-")
    try:
        first = int(low)
        last = int(high) if sep else first
    except ValueError as err:
        raise ParseError(f"pbsnodes: node {node} has bad core range {text!r}") from err
    if first < 0 or last < first or last - first >= _MAX_CORES_PER_NODE:
        raise ParseError(f"pbsnodes: node {node} has bad core range {text!r}")
    return range(first, last + 1)


# --- client stderr ----------------------------------------------------------------------

def is_connection_failure(stderr: str) -> bool:
    """The client never reached pbs_server (trqauthd or server down): see 48_server_down."""
    return "cannot connect to server" in stderr or "Unable to communicate with" in stderr


def is_unknown_node(stderr: str) -> bool:
    """qmgr (rc 2), pbsnodes -x (rc 1) and pbsnodes -o/-c (rc 0!) all say "Unknown node"."""
    return "Unknown node" in stderr


def is_node_already_present(stderr: str) -> bool:
    return "Node name already exists" in stderr


def is_empty_node_list(stderr: str) -> bool:
    """pbsnodes' own words when the server answered and holds no node at all (from the
    6.1 source: "No nodes found" exit 2; the server's PBSE_NONODES text exit 1)."""
    return "No nodes found" in stderr or "Server has no node list" in stderr


def pbsnodes_error(stderr: str) -> str | None:
    """pbsnodes -o/-c/-N exit 0 even when the server refused ("Error setting note attribute
    for X - Unknown node", "Unauthorized Request"): any stderr text is the error."""
    text = stderr.strip()
    return text or None
