"""The dynamictorque HTTP API as seen by dtadmin: where it is, how to authenticate, and
what each failure means as an exit code. requests and the standard library only: the
admin CLI knows the service through its HTTP JSON and nothing else.
"""
from __future__ import annotations

import configparser
import enum
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import quote

import requests

DEFAULT_URL = "http://127.0.0.1:8080"
DEFAULT_TIMEOUT_SECONDS = 10.0
SYSTEM_CONFIG = Path("/etc/dynamictorque/dtadmin.conf")
USER_CONFIG = Path("~/.config/dtadmin.conf")
CONFIG_SECTION = "dtadmin"
CONFIG_KEYS = ("url", "token_file", "timeout", "proxy")
# Read by hand, as requests would: the session ignores the environment (see make_session).
CA_BUNDLE_VARIABLES = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")


class ExitCode(enum.IntEnum):
    OK = 0
    REFUSED = 1        # the service said no: a busy node (the job is named), a bad state
    USAGE = 2          # bad command line or configuration
    UNAVAILABLE = 3    # service down, unreachable, failing, or the reconciler not acting
    AUTH = 4           # no token, unreadable token, or the token was refused
    NOT_FOUND = 5      # no such node, job verdict, intent


class AdminError(Exception):
    """A failure dtadmin reports in one line and turns into its exit code."""

    exit_code = ExitCode.UNAVAILABLE

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Refused(AdminError):
    exit_code = ExitCode.REFUSED


class UsageError(AdminError):
    exit_code = ExitCode.USAGE


class ServiceDown(AdminError):
    exit_code = ExitCode.UNAVAILABLE


class AuthFailed(AdminError):
    exit_code = ExitCode.AUTH


class NotFound(AdminError):
    exit_code = ExitCode.NOT_FOUND


@dataclass(frozen=True)
class Connection:
    url: str = DEFAULT_URL
    token_file: Path | None = None
    timeout: float = DEFAULT_TIMEOUT_SECONDS
    proxy: str | None = None          # only ever set explicitly: --proxy or `proxy` in a config
    ca_bundle: str | None = None      # REQUESTS_CA_BUNDLE or CURL_CA_BUNDLE


def config_paths(environ: Mapping[str, str]) -> list[Path]:
    """DTADMIN_CONFIG names the one file to read; otherwise the system file, then the
    user's file, which overrides it."""
    chosen = environ.get("DTADMIN_CONFIG", "")
    if chosen:
        return [Path(chosen)]
    return [SYSTEM_CONFIG, USER_CONFIG.expanduser()]


def _read_config(paths: list[Path]) -> dict[str, str]:
    values: dict[str, str] = {}
    for path in paths:
        if not path.exists():
            continue
        parser = configparser.ConfigParser(interpolation=None)
        try:
            parser.read_string(path.read_text(encoding="utf-8"), source=str(path))
        except (OSError, UnicodeDecodeError, configparser.Error) as error:
            raise UsageError(f"cannot read config {path}: {error}") from error
        for section in parser.sections():
            if section != CONFIG_SECTION:
                raise UsageError(f"{path}: unknown section [{section}]; "
                                 f"use [{CONFIG_SECTION}]")
        if parser.has_section(CONFIG_SECTION):
            for key, value in parser.items(CONFIG_SECTION):
                if key not in CONFIG_KEYS:
                    raise UsageError(f"{path}: unknown key {key!r} in [{CONFIG_SECTION}]; "
                                     f"known keys: {', '.join(CONFIG_KEYS)}")
                values[key] = value.strip()
    return values


def _timeout(text: str, where: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise UsageError(f"{where}: timeout must be a positive number of seconds, not {text!r}")
    return value


def load_connection(*, url: str | None = None, token_file: str | None = None,
                    timeout: float | None = None, proxy: str | None = None,
                    environ: Mapping[str, str] = os.environ) -> Connection:
    """Flags beat the environment (DTADMIN_URL, DTADMIN_TOKEN_FILE), which beats the
    config files (INI, section [dtadmin], keys url, token_file, timeout, proxy).

    The proxy comes from --proxy or the config only, never from http_proxy and the like:
    those are set for the user's web traffic, and the admin token must not follow them."""
    config = _read_config(config_paths(environ))
    chosen_url = url or environ.get("DTADMIN_URL") or config.get("url") or DEFAULT_URL
    if not chosen_url.startswith(("http://", "https://")):
        raise UsageError(f"the service URL must start with http:// or https://: {chosen_url!r}")
    chosen_token = token_file or environ.get("DTADMIN_TOKEN_FILE") or config.get("token_file")
    chosen_timeout = (timeout if timeout is not None
                      else _timeout(config["timeout"], "config") if "timeout" in config
                      else DEFAULT_TIMEOUT_SECONDS)
    chosen_proxy = proxy or config.get("proxy") or None
    if chosen_proxy is not None and not chosen_proxy.startswith(("http://", "https://")):
        raise UsageError(f"--proxy (or proxy in dtadmin.conf) must be a URL starting with "
                         f"http:// or https://: {chosen_proxy!r}")
    ca_bundle = next((environ[name] for name in CA_BUNDLE_VARIABLES if environ.get(name)), None)
    return Connection(url=chosen_url.rstrip("/"),
                      token_file=Path(chosen_token).expanduser() if chosen_token else None,
                      timeout=chosen_timeout, proxy=chosen_proxy, ca_bundle=ca_bundle)


def make_session(connection: Connection) -> requests.Session:
    """A session that reaches the API directly unless a proxy was asked for.

    trust_env=False keeps requests from picking a proxy out of http_proxy, https_proxy or
    ALL_PROXY (even for 127.0.0.1) and sending the admin token through it; it also drops
    .netrc and the CA bundle variables, so the bundle is set here by hand."""
    session = requests.Session()
    session.trust_env = False
    if connection.proxy is not None:
        session.proxies = {"http": connection.proxy, "https": connection.proxy}
    if connection.ca_bundle is not None:
        session.verify = connection.ca_bundle
    return session


def path_segment(text: str) -> str:
    """A node name or job id as one URL path segment ("14[2].vm" -> "14%5B2%5D.vm")."""
    return quote(text, safe="")


class Client:
    def __init__(self, connection: Connection, session: requests.Session | None = None) -> None:
        self.connection = connection
        self.session = session or make_session(connection)

    @property
    def url(self) -> str:
        return self.connection.url

    def get(self, path: str, params: Mapping[str, str] | None = None) -> dict[str, Any]:
        return self._request("GET", path, params=params, headers={"Accept": "application/json"})

    def post(self, path: str) -> dict[str, Any]:
        """A mutation: carries the admin token."""
        headers = {"Accept": "application/json", "Authorization": f"Bearer {self._token()}"}
        return self._request("POST", path, headers=headers)

    def _token(self) -> str:
        path = self.connection.token_file
        if path is None:
            raise AuthFailed("no admin token: pass --token-file, set DTADMIN_TOKEN_FILE, or "
                             f"set token_file in [{CONFIG_SECTION}] of {USER_CONFIG} or "
                             f"{SYSTEM_CONFIG}")
        try:
            token = path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as error:
            raise AuthFailed(f"cannot read the admin token file {path}: {error}") from error
        if not token:
            raise AuthFailed(f"the admin token file {path} is empty")
        return token

    def _request(self, method: str, path: str, *, params: Mapping[str, str] | None = None,
                 headers: Mapping[str, str]) -> dict[str, Any]:
        url = self.url + path
        try:
            response = self.session.request(method, url, params=params, headers=dict(headers),
                                            timeout=self.connection.timeout)
        except requests.Timeout as error:
            raise ServiceDown(f"no answer from the dynamictorque API at {self.url} within "
                              f"{self.connection.timeout:g} s") from error
        except requests.RequestException as error:
            raise ServiceDown(f"cannot reach the dynamictorque API at {self.url} "
                              f"({type(error).__name__}): is it running? --url, DTADMIN_URL "
                              "or dtadmin.conf set its address") from error
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.status_code < 400:
            if not isinstance(body, dict):
                raise ServiceDown(f"{method} {path}: the service answered HTTP "
                                  f"{response.status_code} without a JSON object; is {self.url} "
                                  "the dynamictorque API?")
            return body
        raise self._failure(response.status_code, body, f"{method} {path}")

    def _failure(self, status: int, body: Any, what: str) -> AdminError:
        error = body.get("error") if isinstance(body, dict) else None
        message = (str(error.get("message")) if isinstance(error, dict)
                   else f"HTTP {status} without an error body")
        if status == 401:
            return AuthFailed(f"the service refused the admin token ({message}); check "
                              f"{self.connection.token_file}")
        if status == 403:
            return AuthFailed(f"forbidden: {message}")
        if status == 404:
            return NotFound(message)
        if status == 409:
            return Refused(message)
        if 400 <= status < 500:
            return UsageError(f"{what}: {message}")
        return ServiceDown(f"{what}: the service failed (HTTP {status}): {message}")
