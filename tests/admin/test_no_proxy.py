"""dtadmin and proxies: the admin token goes to the API and nowhere else.

requests would route even 127.0.0.1 through http_proxy/ALL_PROXY (and send the bearer
token with it), so dtadmin ignores the proxy variables and uses a proxy only when told
with --proxy or `proxy` in dtadmin.conf. Ignoring the environment must not lose
REQUESTS_CA_BUNDLE, which an https API with a site CA relies on.
"""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Iterator

import pytest
from werkzeug.serving import make_server

from admin.cli import main
from dtserver.api import create_app
from dtserver.api.settings import ApiSettings
from dtserver.clock import FakeClock
from dtserver.store.sqlite import SqliteStore
from tests.admin.conftest import Service, write_token
from tests.hooks.support import Certificate, ProxyTrap, proxy_environment


@pytest.fixture
def proxy_trap(monkeypatch: pytest.MonkeyPatch) -> Iterator[ProxyTrap]:
    """A would-be proxy named by every proxy variable, with no exemption for loopback."""
    trap = ProxyTrap()
    for name, value in proxy_environment(trap.url).items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    yield trap
    trap.close()


def test_proxy_variables_never_see_the_admin_token(service: Service, proxy_trap: ProxyTrap,
                                                   capsys) -> None:
    assert service.dtadmin("sleep") == 0
    assert service.dtadmin("info") == 0

    assert service.store.is_sleeping() is True          # the mutation reached the API
    assert "sleep mode on" in capsys.readouterr().out
    assert proxy_trap.requests() == []


@pytest.mark.parametrize("where", ["flag", "config"])
def test_a_proxy_is_used_when_asked_for(service: Service, proxy_trap: ProxyTrap,
                                        monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                        where: str) -> None:
    argv = ["nodes"]
    if where == "flag":
        argv = ["--proxy", proxy_trap.url, *argv]
    else:
        config = tmp_path / "dtadmin.conf"
        config.write_text(f"[dtadmin]\nproxy = {proxy_trap.url}\n", encoding="utf-8")
        monkeypatch.setenv("DTADMIN_CONFIG", str(config))

    # The trap answers nothing, so the command fails as with an unreachable service.
    assert service.dtadmin(*argv) == 3

    [request] = proxy_trap.requests()
    assert request.startswith(f"GET {service.url}/v1/nodes HTTP/1.1".encode())


def test_a_proxy_that_is_not_a_url_is_a_usage_error(service: Service, capsys) -> None:
    assert service.dtadmin("--proxy", "proxy.example.org:3128", "nodes") == 2

    assert "--proxy" in capsys.readouterr().err


# -- https with a site CA ---------------------------------------------------------------------

@pytest.fixture
def tls_service(store: SqliteStore, clock: FakeClock, tmp_path: Path,
                certificate: Certificate) -> Iterator[Service]:
    token_file = write_token(tmp_path / "admin.token")
    app = create_app(ApiSettings(db_path=store.path, token_file=token_file),
                     store=store, clock=clock)
    server = make_server("127.0.0.1", 0, app, threaded=True,
                         ssl_context=(str(certificate.cert), str(certificate.key)))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02},
                              daemon=True)
    thread.start()
    try:
        yield Service(f"https://127.0.0.1:{server.server_port}", store, clock, token_file)
    finally:
        server.shutdown()
        thread.join(timeout=5)
        server.server_close()


@pytest.mark.parametrize("variable", ["REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"])
def test_the_ca_bundle_variables_still_verify_an_https_api(
        tls_service: Service, certificate: Certificate, proxy_trap: ProxyTrap,
        monkeypatch: pytest.MonkeyPatch, variable: str) -> None:
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    assert tls_service.dtadmin("sleep") == 3            # the site CA is not trusted yet

    monkeypatch.setenv(variable, str(certificate.cert))

    assert tls_service.dtadmin("sleep") == 0
    assert tls_service.store.is_sleeping() is True
    assert proxy_trap.requests() == []


def test_dtadmin_main_reads_no_proxy_from_a_bare_environment(
        service: Service, proxy_trap: ProxyTrap, monkeypatch: pytest.MonkeyPatch) -> None:
    # The same through main() with the URL from the environment, as a shell user runs it.
    monkeypatch.setenv("DTADMIN_URL", service.url)
    monkeypatch.setenv("DTADMIN_TOKEN_FILE", str(service.token_file))

    assert main(["wake"]) == 0

    assert proxy_trap.requests() == []
