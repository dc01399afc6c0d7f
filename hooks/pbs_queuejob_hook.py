"""dynamictorque queuejob hook for OpenPBS and PBS Professional.

The PBS counterpart of hooks/torque_submitfilter: when a job is queued, POST its demand
to the dynamictorque API as a hint, and accept the job. The hint carries the raw
`Resource_List` entries (`select=2:ncpus=4`, `walltime=01:00:00`, ...): the service owns
the one request parser. Only with `reject_unservable = yes`, and only when the service
answers in time that no pool can ever run the job, is the job rejected instead.

Install (hooks/README.md has the details):

    qmgr -c "create hook dynamictorque event=queuejob"
    qmgr -c "import hook dynamictorque application/x-python default pbs_queuejob_hook.py"
    qmgr -c "import hook dynamictorque application/x-config default filter.conf"

The config is the submit filter's format (url, token_file, ca_file, timeout_seconds,
reject_unservable; log_file and warn_on_stderr do not apply here). The hook runs inside
pbs_server, which handles one request at a time, so the timeout is short and the URL
should name an IP address: a socket timeout does not bound a DNS lookup.

Standard library and the `pbs` module only; Python 3.6 or later (OpenPBS on EL7).
"""
import http.client
import json
import ssl
from typing import Any, Dict, List, Optional, Tuple
from urllib.parse import urlsplit

import pbs

DEFAULT_CONFIG = "/etc/dynamictorque/filter.conf"
DEFAULT_URL = "http://127.0.0.1:8080"
DEFAULT_TIMEOUT_SECONDS = 0.5
MAX_TIMEOUT_SECONDS = 0.8
SETTINGS_KEYS = ("url", "token_file", "ca_file", "timeout_seconds", "log_file",
                 "warn_on_stderr", "reject_unservable")
_TRUE = ("yes", "true", "on", "1")
_FALSE = ("no", "false", "off", "0")
# The hint's array field takes TORQUE's -t grammar; longer expansions use a range of the
# same size, which is all the service reads from it.
_MAX_ARRAY_CHARS = 1024
_ANSWER_LIMIT = 64 * 1024
_MAX_REASON_CHARS = 300


class ConfigError(Exception):
    pass


def read_settings(path: str, required: bool) -> Dict[str, Any]:
    """url, token_file, ca_file, timeout_seconds and reject_unservable from the filter's
    `key = value` file."""
    settings: Dict[str, Any] = {"url": DEFAULT_URL, "token_file": None, "ca_file": None,
                                "timeout_seconds": DEFAULT_TIMEOUT_SECONDS,
                                "reject_unservable": False}
    try:
        with open(path, encoding="utf-8") as source:
            text = source.read()
    except FileNotFoundError:
        if required:
            raise ConfigError(f"{path}: no such file") from None
        return settings
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: {error}") from None
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, equals, value = (part.strip() for part in line.partition("="))
        where = f"{path}:{number}"
        if not equals:
            raise ConfigError(f"{where}: expected key = value")
        if key not in SETTINGS_KEYS:
            raise ConfigError(f"{where}: unknown key {key!r}; known: {', '.join(SETTINGS_KEYS)}")
        if key == "url":
            if not value.startswith(("http://", "https://")):
                raise ConfigError(f"{where}: url must start with http:// or https://")
            settings["url"] = value.rstrip("/")
        elif key == "timeout_seconds":
            try:
                seconds = float(value)
            except ValueError:
                seconds = -1.0
            if not 0 < seconds <= MAX_TIMEOUT_SECONDS:
                raise ConfigError(f"{where}: timeout_seconds must be above 0 and at most "
                                  f"{MAX_TIMEOUT_SECONDS}")
            settings["timeout_seconds"] = seconds
        elif key == "reject_unservable":
            if value.lower() not in _TRUE + _FALSE:
                raise ConfigError(f"{where}: reject_unservable must be yes or no")
            settings[key] = value.lower() in _TRUE
        elif key in ("token_file", "ca_file"):
            settings[key] = value or None
    return settings


def read_token(path: str) -> str:
    with open(path, encoding="utf-8") as source:
        token = source.read().strip()
    if not token or any(not " " < char < "\x7f" for char in token):
        raise ValueError(f"token file {path} is empty or holds characters a header cannot carry")
    return token


def _text(value: Any) -> Optional[str]:
    """PBS attribute objects print as their value; unset attributes are None."""
    if value is None:
        return None
    text = str(value)
    return text if text else None


def torque_array_spec(indices: str) -> str:
    """PBS `-J X-Y[:Z][%N]` in the TORQUE `-t` grammar the hint uses (same size, same limit)."""
    ranges, percent, limit = indices.partition("%")
    span, colon, step_text = ranges.partition(":")
    if not colon:
        return indices
    first, _, last = span.partition("-")
    start, stop, step = int(first), int(last), int(step_text)
    if step < 1 or stop < start:
        raise ValueError(f"array indices {indices!r} are not X-Y:Z")
    listed = ",".join(str(index) for index in range(start, stop + 1, step))
    if len(listed) > _MAX_ARRAY_CHARS:
        listed = f"{start}-{start + len(range(start, stop + 1, step)) - 1}"
    return listed + percent + limit


def _skip_reason(job: Any) -> Optional[str]:
    """Why the job will not be waiting for nodes once queued, if it won't (docs/design.md, Demand)."""
    holds = _text(getattr(job, "Hold_Types", None)) or "n"
    if holds.strip("n"):
        return "held"
    if _text(getattr(job, "depend", None)) is not None:
        return "dependency"
    if _text(getattr(job, "Execution_Time", None)) is not None:
        return "deferred"
    return None


def build_hint(event: Any) -> Tuple[Optional[Dict[str, Any]], str]:
    """The hint for the queued job, or None and the reason there is none."""
    job = event.job
    reason = _skip_reason(job)
    if reason is not None:
        return None, reason
    owner = _text(getattr(job, "Job_Owner", None)) or ""
    user = _text(getattr(job, "euser", None)) or _text(event.requestor) or owner.partition("@")[0]
    resources: List[str] = []
    resource_list = job.Resource_List
    for name in resource_list.keys():     # a pbs_resource, not a dict: keys() is its API
        value = _text(resource_list[name])
        if value is not None:
            resources.append(f"{name}={value}")
    hint: Dict[str, Any] = {"user": user, "resources": resources}
    queue = (_text(getattr(job, "queue", None)) or "").partition("@")[0]
    if queue:
        hint["queue"] = queue
    fields = (("account", _text(getattr(job, "Account_Name", None))),
              ("job_name", _text(getattr(job, "Job_Name", None))),
              ("submit_host", _text(getattr(event, "requestor_host", None))))
    for field, value in fields:
        if value is not None:
            hint[field] = value
    indices = _text(getattr(job, "array_indices_submitted", None))
    if indices is not None:
        hint["array"] = torque_array_spec(indices)
    return hint, ""


def post_hint(url: str, hint: Dict[str, Any], token: Optional[str], ca_file: Optional[str],
              timeout: float) -> Tuple[int, str]:
    """POST the hint to <url>/v1/hints; (status, the answer)."""
    parts = urlsplit(url)
    if not parts.hostname:
        raise ValueError(f"no host in url {url!r}")
    connection: http.client.HTTPConnection
    if parts.scheme == "https":
        context = ssl.create_default_context(cafile=ca_file)
        connection = http.client.HTTPSConnection(parts.hostname, parts.port, timeout=timeout,
                                                 context=context)
    else:
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = "Bearer " + token
    try:
        connection.request("POST", parts.path + "/v1/hints", body=json.dumps(hint).encode(),
                           headers=headers)
        response = connection.getresponse()
        return response.status, response.read(_ANSWER_LIMIT).decode("utf-8", "replace")
    finally:
        connection.close()


def unservable_reason(answer: str) -> Optional[str]:
    """The reason, when the service's 202 answer says no pool can ever run the job; None
    for any other answer (servable, unknown, or not understood), which refuses nothing."""
    try:
        verdict = json.loads(answer)
    except (ValueError, RecursionError):
        return None
    if not isinstance(verdict, dict) or verdict.get("servable") is not False:
        return None
    reason = verdict.get("reason")
    if not isinstance(reason, str) or not reason.strip():
        reason = "no pool can ever run this job"
    # JSON may carry lone surrogates, which the server log cannot encode.
    text = reason.strip().encode("utf-8", "replace").decode("utf-8")
    return "".join(char if char.isprintable() else "\ufffd" for char in text)[:_MAX_REASON_CHARS]


def announce(event: Any) -> Optional[str]:
    """Send the hint; the reason to reject the job, if the settings ask for it and the
    service says no pool can ever run it."""
    config = pbs.hook_config_filename
    settings = read_settings(config or DEFAULT_CONFIG, required=bool(config))
    hint, reason = build_hint(event)
    if hint is None:
        pbs.logmsg(pbs.LOG_DEBUG, f"dynamictorque: hint skipped reason={reason}")
        return None
    token_file = settings["token_file"]
    token = read_token(token_file) if token_file else None
    status, answer = post_hint(settings["url"], hint, token, settings["ca_file"],
                               settings["timeout_seconds"])
    if status != 202:
        pbs.logmsg(pbs.LOG_WARNING, f"dynamictorque: hint refused status={status} "
                                    f"answer={answer[:200]!r}")
        return None
    pbs.logmsg(pbs.LOG_DEBUG, f"dynamictorque: hint sent user={hint['user']} "
                              f"resources={hint['resources']}")
    rejection = unservable_reason(answer) if settings["reject_unservable"] else None
    if rejection is not None:
        pbs.logmsg(pbs.LOG_WARNING, f"dynamictorque: job rejected reason=unservable "
                                    f"user={hint['user']} detail={rejection}")
    return rejection


def main() -> None:
    event = pbs.event()
    rejection = None
    try:
        rejection = announce(event)
    # A hint only saves time: no failure of ours may refuse or fail the user's job.
    except Exception as error:
        pbs.logmsg(pbs.LOG_WARNING, f"dynamictorque: hint not sent error={error!r}")
    if rejection is not None:
        event.reject(f"rejected by dynamictorque: {rejection}")
    event.accept()


main()
