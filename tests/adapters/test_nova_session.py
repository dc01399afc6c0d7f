"""build_nova_client without a cloud: credentials resolution, microversion negotiation, and
the whole path against a stub Keystone + Nova version document on a loopback port."""
from __future__ import annotations

import json
import logging
import os
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator

import pytest
from novaclient import api_versions

from dtserver.cloud import CloudError
from dtserver.cloud.nova_session import (
    DEFAULT_TIMEOUT, MIN_MICROVERSION, build_nova_client, cloud_region, has_os_variables,
    negotiate_microversion)
from dtserver.model import ErrorKind

PASSWORD = "s3cret-do-not-log"
PLAINTEXT = {"auth_url": "http://127.0.0.1:9/identity/v3", "username": "dtuser",
             "password": PASSWORD, "project_name": "hpc"}
TOKEN = "stub-token-1"


@pytest.fixture(autouse=True)
def no_openstack_environment(monkeypatch, tmp_path):
    """Neither the developer's OS_* variables nor their clouds.yaml leak into these tests."""
    for key in [key for key in os.environ if key.startswith("OS_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(tmp_path / "clouds.yaml"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


def write_clouds(path: Path, clouds: dict[str, Any]) -> None:
    path.write_text(json.dumps({"clouds": clouds}))       # YAML is a superset of JSON


def token_cloud(endpoint: str, token: str = TOKEN) -> dict[str, Any]:
    return {"auth_type": "admin_token", "auth": {"endpoint": endpoint, "token": token}}


# --- microversions ----------------------------------------------------------------------

@pytest.mark.parametrize("server_max, expected", [
    ("2.104", "2.96"),      # the server knows more: we stay on the pin
    ("2.96", "2.96"),
    ("2.90", "2.90"),       # an older cloud: down to what it speaks
    (MIN_MICROVERSION, MIN_MICROVERSION),
])
def test_the_pinned_microversion_is_negotiated_down_to_an_older_server(server_max, expected):
    chosen = negotiate_microversion("2.96", "2.1", server_max)

    assert chosen == api_versions.APIVersion(expected)


@pytest.mark.parametrize("server_min, server_max", [("2.1", "2.51"), ("2.97", "2.110")])
def test_a_server_outside_the_usable_range_is_refused(server_min, server_max):
    with pytest.raises(CloudError) as caught:
        negotiate_microversion("2.96", server_min, server_max)

    assert caught.value.kind is ErrorKind.OTHER


@pytest.mark.parametrize("microversion", ["2.37", "2.200"])
def test_a_microversion_outside_what_we_and_novaclient_support_is_a_programming_error(
        microversion):
    with pytest.raises(ValueError, match=MIN_MICROVERSION):
        build_nova_client(cloud_name=None, auth=PLAINTEXT, region=None,
                          microversion=microversion)


# --- where the credentials come from ----------------------------------------------------

def test_a_clouds_yaml_entry_is_read_by_name_with_its_region(tmp_path):
    write_clouds(tmp_path / "clouds.yaml", {
        "hpc": {"auth": {"auth_url": "http://127.0.0.1:9/v3", "username": "u",
                         "password": "p", "project_name": "x", "user_domain_name": "D",
                         "project_domain_name": "D"},
                "regions": ["north", "south"]}})

    region = cloud_region(cloud_name="hpc", auth=PLAINTEXT, region="south")

    assert region.name == "hpc"
    assert region.region_name == "south"
    assert region.config["auth"]["username"] == "u"


def test_os_variables_come_before_plaintext_keys(monkeypatch, caplog):
    monkeypatch.setenv("OS_AUTH_URL", "http://127.0.0.1:9/v3")
    monkeypatch.setenv("OS_USERNAME", "from-env")
    monkeypatch.setenv("OS_PASSWORD", "env-password")
    monkeypatch.setenv("OS_PROJECT_NAME", "env-project")
    monkeypatch.setenv("OS_USER_DOMAIN_NAME", "Default")
    monkeypatch.setenv("OS_PROJECT_DOMAIN_NAME", "Default")

    with caplog.at_level(logging.WARNING):
        region = cloud_region(cloud_name=None, auth=PLAINTEXT, region=None)

    assert region.config["auth"]["username"] == "from-env"
    assert not caplog.records


def test_os_cloud_names_a_clouds_yaml_entry(monkeypatch, tmp_path):
    write_clouds(tmp_path / "clouds.yaml", {"a": token_cloud("http://127.0.0.1:9/a"),
                                            "b": token_cloud("http://127.0.0.1:9/b")})
    monkeypatch.setenv("OS_CLOUD", "b")

    region = cloud_region(cloud_name=None, auth={}, region=None)

    assert region.config["auth"]["endpoint"] == "http://127.0.0.1:9/b"


def test_a_cloud_name_beats_os_variables(monkeypatch, tmp_path):
    write_clouds(tmp_path / "clouds.yaml", {"mine": token_cloud("http://127.0.0.1:9/mine")})
    monkeypatch.setenv("OS_CLOUD", "other")

    region = cloud_region(cloud_name="mine", auth={}, region=None)

    assert region.config["auth"]["endpoint"] == "http://127.0.0.1:9/mine"


def test_plaintext_keys_still_load_with_a_warning_that_never_shows_the_password(caplog):
    with caplog.at_level(logging.DEBUG):
        region = cloud_region(cloud_name=None, auth=PLAINTEXT, region="RegionOne")

    auth = region.config["auth"]
    assert (auth["username"], auth["project_name"]) == ("dtuser", "hpc")
    assert auth["user_domain_name"] == auth["project_domain_name"] == "Default"
    assert region.region_name == "RegionOne"
    warnings = [record for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warnings) == 1 and "plaintext" in warnings[0].getMessage()
    assert all(PASSWORD not in record.getMessage() for record in caplog.records)


@pytest.mark.parametrize("auth", [{}, {**PLAINTEXT, "password": ""}])
def test_missing_credentials_are_an_auth_error(auth):
    with pytest.raises(CloudError) as caught:
        cloud_region(cloud_name=None, auth=auth, region=None)

    assert caught.value.kind is ErrorKind.AUTH


def test_an_unknown_cloud_name_is_an_auth_error(tmp_path):
    write_clouds(tmp_path / "clouds.yaml", {"mine": token_cloud("http://127.0.0.1:9/")})

    with pytest.raises(CloudError) as caught:
        cloud_region(cloud_name="yours", auth={}, region=None)

    assert caught.value.kind is ErrorKind.AUTH


@pytest.mark.parametrize("environ, expected", [
    ({}, False),
    ({"OS_REGION_NAME": "north", "OS_CLIENT_CONFIG_FILE": "/x"}, False),
    ({"OS_TEST_TIMEOUT": "60", "OS_STDOUT_CAPTURE": "1"}, False),
    ({"OS_CLOUD": "hpc"}, True),
    ({"OS_AUTH_URL": "http://127.0.0.1:9/v3"}, True),
    ({"PATH": "/bin"}, False),
])
def test_only_variables_that_carry_configuration_count_as_os_credentials(environ, expected):
    assert has_os_variables(environ) is expected


# --- the whole path, against a stub on loopback -----------------------------------------

@dataclass
class StubCloud:
    """Keystone v3 (discovery + password tokens) and Nova's version document and flavor
    list, as far as build_nova_client and one call need them."""

    nova_max: str = "2.104"
    hide_versions: bool = False          # the version document answers 401
    requests: list[tuple[str, str, dict[str, str], bytes]] = field(default_factory=list)
    base: str = ""

    def answer(self, method: str, path: str) -> tuple[int, dict[str, str], Any]:
        if method == "GET" and path.rstrip("/") == "/identity/v3":
            return 200, {}, {"version": {
                "id": "v3.14", "status": "stable", "media-types": [],
                "links": [{"rel": "self", "href": f"{self.base}/identity/v3/"}]}}
        if method == "POST" and path == "/identity/v3/auth/tokens":
            return 201, {"X-Subject-Token": TOKEN}, {"token": {
                "methods": ["password"], "expires_at": "2999-01-01T00:00:00.000000Z",
                "user": {"id": "u1", "name": "dtuser", "domain": {"id": "default"}},
                "project": {"id": "p1", "name": "hpc", "domain": {"id": "default"}},
                "roles": [{"id": "r1", "name": "member"}],
                "catalog": [{"type": "compute", "name": "nova", "id": "c1", "endpoints": [
                    {"id": "e1", "interface": "public", "region": "RegionOne",
                     "region_id": "RegionOne", "url": f"{self.base}/compute/v2.1"}]}]}}
        if method == "GET" and path.rstrip("/") == "/compute/v2.1":
            if self.hide_versions:
                return 401, {}, {"unauthorized": {"code": 401, "message": "stub: hidden"}}
            return 200, {}, {"version": {
                "id": "v2.1", "status": "CURRENT", "version": self.nova_max,
                "min_version": "2.1", "updated": "2013-07-23T11:33:21Z",
                "links": [{"rel": "self", "href": f"{self.base}/compute/v2.1/"}]}}
        if method == "GET" and path.startswith("/compute/v2.1/flavors/detail"):
            return 200, {}, {"flavors": []}
        return 404, {}, {"itemNotFound": {"code": 404, "message": "stub: no such path"}}


@pytest.fixture
def stub() -> Iterator[StubCloud]:
    cloud = StubCloud()

    class Handler(BaseHTTPRequestHandler):
        def _reply(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            cloud.requests.append((self.command, self.path, dict(self.headers), body))
            status, headers, payload = cloud.answer(self.command, self.path)
            data = json.dumps(payload).encode()
            self.send_response(status)
            for key, value in {"Content-Type": "application/json", **headers}.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = _reply

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    cloud.base = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield cloud
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_plaintext_keys_reach_nova_through_a_keystone_token(stub, caplog):
    with caplog.at_level(logging.DEBUG):
        client = build_nova_client(
            cloud_name=None, region="RegionOne",
            auth={**PLAINTEXT, "auth_url": f"{stub.base}/identity/v3"})
        client.flavors.list()

    assert client.api_version == api_versions.APIVersion("2.96")
    token_request = next(body for method, path, _, body in stub.requests
                         if path == "/identity/v3/auth/tokens")
    assert json.loads(token_request)["auth"]["identity"]["password"]["user"]["password"] \
        == PASSWORD
    flavors = next(headers for _, path, headers, _ in stub.requests
                   if path.startswith("/compute/v2.1/flavors"))
    assert flavors["X-Auth-Token"] == TOKEN
    assert flavors["X-OpenStack-Nova-API-Version"] == "2.96"
    assert all(PASSWORD not in record.getMessage() for record in caplog.records)


def test_an_older_nova_gets_its_newest_microversion_on_every_call(stub, tmp_path):
    stub.nova_max = "2.90"
    write_clouds(tmp_path / "clouds.yaml", {"old": token_cloud(f"{stub.base}/compute/v2.1")})

    client = build_nova_client(cloud_name="old", auth={}, region=None)
    client.flavors.list()

    assert client.api_version == api_versions.APIVersion("2.90")
    assert stub.requests[-1][2]["X-OpenStack-Nova-API-Version"] == "2.90"


def test_a_hidden_version_document_keeps_the_pinned_microversion(stub, tmp_path, caplog):
    stub.hide_versions = True
    write_clouds(tmp_path / "clouds.yaml", {"odd": token_cloud(f"{stub.base}/compute/v2.1")})

    with caplog.at_level(logging.WARNING):
        client = build_nova_client(cloud_name="odd", auth={}, region=None)

    assert client.api_version == api_versions.APIVersion("2.96")
    assert "version range unknown" in caplog.text


def test_a_nova_too_old_for_tags_at_create_is_refused(stub, tmp_path):
    stub.nova_max = "2.51"
    write_clouds(tmp_path / "clouds.yaml", {"old": token_cloud(f"{stub.base}/compute/v2.1")})

    with pytest.raises(CloudError, match=MIN_MICROVERSION):
        build_nova_client(cloud_name="old", auth={}, region=None)


def test_an_unreachable_nova_is_a_transient_error(tmp_path):
    write_clouds(tmp_path / "clouds.yaml", {"gone": token_cloud("http://127.0.0.1:9/v2.1")})

    with pytest.raises(CloudError) as caught:
        build_nova_client(cloud_name="gone", auth={}, region=None)

    assert caught.value.kind is ErrorKind.TRANSIENT


def test_requests_time_out_unless_the_cloud_config_says_otherwise(stub, tmp_path):
    write_clouds(tmp_path / "clouds.yaml", {
        "default": token_cloud(f"{stub.base}/compute/v2.1"),
        "patient": {**token_cloud(f"{stub.base}/compute/v2.1"), "api_timeout": 300}})

    default = build_nova_client(cloud_name="default", auth={}, region=None)
    patient = build_nova_client(cloud_name="patient", auth={}, region=None)

    assert default.client.session.timeout == DEFAULT_TIMEOUT
    assert patient.client.session.timeout == 300


def test_a_password_in_the_auth_url_is_masked_in_the_plaintext_warning(caplog):
    auth = {**PLAINTEXT, "auth_url": "http://dtuser:url-secret@127.0.0.1:9/identity/v3"}
    with caplog.at_level(logging.WARNING):
        cloud_region(cloud_name=None, auth=auth, region=None)

    (warning,) = [record.getMessage() for record in caplog.records]
    assert "url-secret" not in warning
    assert "auth_url=http://dtuser:****@127.0.0.1:9/identity/v3" in warning
