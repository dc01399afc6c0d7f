"""build_nova_client against the real Nova API: each credential source reaches it, and the
pinned microversion is what every request carries."""
from __future__ import annotations

import pytest
from novaclient import api_versions

from dtserver.cloud.nova_session import build_nova_client
from tests.tooling.novastack.plugin import CLOUD_NAME

pytestmark = pytest.mark.live_nova


def flavor_names(client) -> set[str]:
    return {flavor.name for flavor in client.flavors.list()}


def test_a_clouds_yaml_entry_reaches_the_real_nova_at_the_pinned_microversion(clean_nova):
    client = build_nova_client(cloud_name=CLOUD_NAME, auth={}, region=None)

    assert client.api_version == api_versions.APIVersion("2.96")
    assert {flavor.name for flavor in clean_nova.flavors} <= flavor_names(client)


def test_os_variables_reach_the_real_nova(clean_nova, monkeypatch):
    monkeypatch.delenv("OS_CLIENT_CONFIG_FILE")
    monkeypatch.setenv("OS_AUTH_TYPE", "admin_token")
    monkeypatch.setenv("OS_ENDPOINT", clean_nova.endpoint.url)
    monkeypatch.setenv("OS_TOKEN", clean_nova.endpoint.token("demo"))

    client = build_nova_client(cloud_name=None, auth={}, region=None)

    assert {flavor.name for flavor in clean_nova.flavors} <= flavor_names(client)


def test_an_older_pin_is_kept_when_the_real_nova_speaks_newer(clean_nova):
    client = build_nova_client(cloud_name=CLOUD_NAME, auth={}, region=None,
                               microversion="2.60")

    assert client.api_version == api_versions.APIVersion("2.60")
    assert {flavor.name for flavor in clean_nova.flavors} <= flavor_names(client)
