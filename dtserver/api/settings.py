"""ApiSettings: everything the HTTP API needs to start, as one typed value."""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from dtserver.config import Settings, load_settings
from dtserver.model import DtError
from dtserver.store import HintLimits

DEFAULT_DB_PATH = Path("/var/lib/dynamictorque/dt.db")
DEFAULT_BIND = "127.0.0.1:8080"   # loopback: the filter and dtadmin run on the server host


class ApiConfigError(DtError):
    """The API refuses to start: a token file is missing, empty or too open."""


@dataclass(frozen=True)
class ApiSettings:
    """Settings of the API process.

    token_file: the admin token (root-only file, 0600 or stricter); guards every mutation
        except hints. None disables the admin endpoints (they answer 403) rather than
        leaving them open.
    hint_token_file: optional token for POST /v1/hints. The submit filter runs as the
        submitting user, so this file is meant to be readable by users: it keeps out
        clients that are not on the cluster, not local users. None accepts hints without a
        token, which is safe enough because a hint only adds demand that expires (hint TTL)
        and stays under every pool limit.
    wakeup_path: the FIFO the reconciler reads; one byte is written after each hint.
    bind: HOST:PORT gunicorn listens on (deploy/gunicorn.conf.py reads it from here).
    warnings: what loading the configuration warned about; logged at start.
    healthz_stale_seconds: /healthz fails when the last reconciler pass is older than this;
        three cloud poll intervals (20 s) by default.
    status_events: how many recent events /status shows.
    hint_limits: how many hints (and bytes) may wait per claimed user and in total; beyond
        them POST /v1/hints answers 429 and the filter lets the job through all the same.
    hint_retry_seconds: the Retry-After of that 429: waiting hints leave within a hint TTL.
    """

    db_path: Path = DEFAULT_DB_PATH
    token_file: Path | None = None
    hint_token_file: Path | None = None
    wakeup_path: Path | None = None
    bind: str = DEFAULT_BIND
    warnings: tuple[str, ...] = ()
    max_body_bytes: int = 64 * 1024
    healthz_stale_seconds: float = 60.0
    status_events: int = 10
    hint_limits: HintLimits = HintLimits()
    hint_retry_seconds: int = 20

    def __post_init__(self) -> None:
        if self.max_body_bytes <= 0:
            raise ValueError(f"max_body_bytes must be positive, got {self.max_body_bytes}")
        if self.healthz_stale_seconds <= 0:
            raise ValueError(
                f"healthz_stale_seconds must be positive, got {self.healthz_stale_seconds}")
        if self.status_events < 0:
            raise ValueError(f"status_events must not be negative, got {self.status_events}")
        host, _, port = self.bind.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"bind must be HOST:PORT, got {self.bind!r}")

    @classmethod
    def from_config(cls, settings: Settings) -> ApiSettings:
        """The API part of dynamic_torque.conf: [api] tokens and the reconciler's state dir."""
        return cls(db_path=settings.db_path, token_file=settings.token_file,
                   hint_token_file=settings.hint_token_file, wakeup_path=settings.wakeup_path,
                   bind=settings.api_bind, warnings=settings.warnings,
                   healthz_stale_seconds=3 * max(settings.job_poller_interval,
                                                 settings.cloud_poller_interval),
                   hint_limits=settings.hint_limits,
                   hint_retry_seconds=math.ceil(settings.effective_hint_ttl))

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> ApiSettings:
        """DT_DB_PATH, DT_TOKEN_FILE, DT_HINT_TOKEN_FILE, DT_WAKEUP_PATH, DT_BIND; unset or
        empty = default."""

        def path(name: str) -> Path | None:
            value = environ.get(name, "")
            return Path(value) if value else None

        return cls(
            db_path=path("DT_DB_PATH") or DEFAULT_DB_PATH,
            token_file=path("DT_TOKEN_FILE"),
            hint_token_file=path("DT_HINT_TOKEN_FILE"),
            wakeup_path=path("DT_WAKEUP_PATH"),
            bind=environ.get("DT_BIND") or DEFAULT_BIND,
        )

    @classmethod
    def from_process_environ(cls, environ: Mapping[str, str]) -> ApiSettings:
        """What the API process runs with (dtserver/wsgi.py, deploy/gunicorn.conf.py):
        dynamic_torque.conf when DT_CONFIG names it, else the DT_* variables.
        Raises ConfigError."""
        if environ.get("DT_CONFIG"):
            return cls.from_config(load_settings(environ["DT_CONFIG"]))
        return cls.from_environ(environ)
