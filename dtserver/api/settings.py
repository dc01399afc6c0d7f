"""ApiSettings: everything the HTTP API needs to start, as one typed value."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from dtserver.config import Settings
from dtserver.model import DtError

DEFAULT_DB_PATH = Path("/var/lib/dynamictorque/dt.db")


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
    wakeup_path: a FIFO (or plain file) the reconciler watches; touched after each hint.
    healthz_stale_seconds: /healthz fails when the last reconciler pass is older than this;
        three cloud poll intervals (20 s) by default.
    status_events: how many recent events /status shows.
    """

    db_path: Path = DEFAULT_DB_PATH
    token_file: Path | None = None
    hint_token_file: Path | None = None
    wakeup_path: Path | None = None
    max_body_bytes: int = 64 * 1024
    healthz_stale_seconds: float = 60.0
    status_events: int = 10

    def __post_init__(self) -> None:
        if self.max_body_bytes <= 0:
            raise ValueError(f"max_body_bytes must be positive, got {self.max_body_bytes}")
        if self.healthz_stale_seconds <= 0:
            raise ValueError(
                f"healthz_stale_seconds must be positive, got {self.healthz_stale_seconds}")
        if self.status_events < 0:
            raise ValueError(f"status_events must not be negative, got {self.status_events}")

    @classmethod
    def from_config(cls, settings: Settings) -> ApiSettings:
        """The API part of dynamic_torque.conf: [api] tokens and the reconciler's state dir."""
        return cls(db_path=settings.db_path, token_file=settings.token_file,
                   hint_token_file=settings.hint_token_file, wakeup_path=settings.wakeup_path,
                   healthz_stale_seconds=3 * max(settings.job_poller_interval,
                                                 settings.cloud_poller_interval))

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> ApiSettings:
        """DT_DB_PATH, DT_TOKEN_FILE, DT_HINT_TOKEN_FILE, DT_WAKEUP_PATH; unset or empty = default."""

        def path(name: str) -> Path | None:
            value = environ.get(name, "")
            return Path(value) if value else None

        return cls(
            db_path=path("DT_DB_PATH") or DEFAULT_DB_PATH,
            token_file=path("DT_TOKEN_FILE"),
            hint_token_file=path("DT_HINT_TOKEN_FILE"),
            wakeup_path=path("DT_WAKEUP_PATH"),
        )
