"""config: secrets are masked wherever the settings are shown, and a file that holds one
warns when group or others can read it."""
from __future__ import annotations

import dataclasses
import textwrap
from pathlib import Path

import pytest

from dtserver.config import ConfigError, describe, load_settings, parse_settings
from dtserver.redact import MASK

SECRETS = """\
[global]
post_add_node_command: notify --token abc123 --node {0}
post_vm_destroy_command: curl -s https://hooks.example.org/dt?token=qwe789&node={0}
[cloud]
cloud_image_uuid: img-1
cloud_auth_url: https://scaler:urlpass@keystone.example.org:5000/v3
cloud_username: scaler
cloud_password: s3cr3t-value
cloud_tenant_name: hpc
"""
SECRET_VALUES = ("abc123", "qwe789", "urlpass", "s3cr3t-value")
NO_SECRETS = "[cloud]\ncloud_image_uuid: img-1\ncloud_name: mycloud\n"


def test_describe_masks_url_userinfo_and_tokens_in_event_commands():
    text = describe(parse_settings(SECRETS, source="test.conf"))

    assert not [value for value in SECRET_VALUES if value in text]
    assert f"cloud_auth_url: https://scaler:{MASK}@keystone.example.org:5000/v3\n" in text
    assert f"post_add_node_command: notify --token '{MASK}' --node '{{0}}'\n" in text
    assert f"?token={MASK}&node=" in text
    assert f"cloud_password: {MASK}\n" in text


def test_described_secrets_read_back_as_the_mask_and_everything_else_unchanged():
    settings = parse_settings(SECRETS, source="test.conf")

    again = parse_settings(describe(settings), source="described")

    # Masked values are not meant to be read back: they come back as the mask, the rest
    # of the settings as they were.
    assert again.cloud_auth == {**settings.cloud_auth, "password": MASK,
                                "auth_url": f"https://scaler:{MASK}@keystone.example.org:5000/v3"}
    assert again.events.post_add_node == ("notify", "--token", MASK, "--node", "{0}")
    assert again.events.post_vm_destroy == (
        "curl", "-s", f"https://hooks.example.org/dt?token={MASK}&node={{0}}")
    unmasked = dataclasses.replace(again, cloud_auth=settings.cloud_auth,
                                   events=settings.events, warnings=settings.warnings)
    assert unmasked == settings


def test_an_invalid_url_is_refused_without_showing_its_password():
    text = SECRETS.replace("https://scaler:urlpass@", "ftp://scaler:urlpass@")
    with pytest.raises(ConfigError) as caught:
        parse_settings(text, source="test.conf")
    assert "urlpass" not in str(caught.value)
    assert "cloud_auth_url" in str(caught.value)


def readable_warnings(path: Path) -> list[str]:
    return [warning for warning in load_settings(path).warnings
            if "readable by group/others" in warning]


def write_config(path: Path, text: str, mode: int) -> Path:
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    path.chmod(mode)
    return path


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644])
def test_a_readable_file_holding_a_password_warns_naming_the_file_and_mode(tmp_path, mode):
    path = write_config(tmp_path / "dt.conf", SECRETS, mode)

    warnings = readable_warnings(path)

    assert len(warnings) == 1
    assert str(path) in warnings[0] and f"{mode:04o}" in warnings[0]
    assert "cloud_password" in warnings[0] and "chmod 600" in warnings[0]
    assert not [value for value in SECRET_VALUES if value in warnings[0]]


def test_a_private_file_holding_a_password_loads_without_that_warning(tmp_path):
    path = write_config(tmp_path / "dt.conf", SECRETS, 0o600)

    assert not readable_warnings(path)


def test_a_token_in_an_event_command_is_a_secret_too(tmp_path):
    path = write_config(tmp_path / "dt.conf", NO_SECRETS + "[global]\n"
                        "post_add_node_command: notify --token abc123\n", 0o644)

    (warning,) = readable_warnings(path)
    assert "post_add_node_command" in warning


def test_a_readable_file_without_secrets_loads_without_warnings(tmp_path):
    path = write_config(tmp_path / "dt.conf", NO_SECRETS, 0o644)

    assert load_settings(path).warnings == ()
