"""deploy/cloud-init: the worker user-data template renders to valid cloud-config.

Rendered the way the reconciler does it: the config names the template in
cloud_vm_userdata_file, build_policy reads it into the pool, render_user_data fills it.
"""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from dtserver.config import build_policy, parse_settings
from dtserver.model import Flavor
from dtserver.reconcile.userdata import render_user_data

yaml = pytest.importorskip("yaml")

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "deploy" / "cloud-init" / "worker-user-data.yaml.tmpl"
SCHEMA_SECONDS = 120
# The cloud-config modules the template uses, each documented by cloud-init.
KNOWN_KEYS = {"hostname", "preserve_hostname", "manage_etc_hosts", "write_files", "runcmd",
              "final_message"}


def rendered(hostname: str = "cloud-007", torque_server: str = "torque.example.org") -> str:
    settings = parse_settings(f"[cloud]\ncloud_image_uuid: image-1\n"
                              f"cloud_vm_userdata_file: {TEMPLATE}\n")
    policy = build_policy(settings, {"m1.small": Flavor("m1.small", cores=2, mem_mb=4096)})
    text = render_user_data(policy.pools[0], hostname, torque_server)
    assert text is not None
    return text


def files(config: dict) -> dict[str, str]:
    return {item["path"]: item["content"] for item in config["write_files"]}


def test_rendered_user_data_is_cloud_config_yaml() -> None:
    text = rendered()
    assert text.startswith("#cloud-config\n")
    config = yaml.safe_load(text)
    assert isinstance(config, dict)
    assert set(config) <= KNOWN_KEYS


def test_the_instance_takes_the_node_slot_name_as_its_hostname() -> None:
    config = yaml.safe_load(rendered(hostname="gpu-012"))
    assert config["hostname"] == "gpu-012"
    assert config["preserve_hostname"] is False
    # The name must not map to 127.0.1.1: the mom would report a loopback address.
    assert config["manage_etc_hosts"] is False
    assert any("gpu-012" in " ".join(command) and "/etc/hosts" in " ".join(command)
               for command in config["runcmd"])


def test_pbs_mom_is_pointed_at_the_torque_server_and_started() -> None:
    config = yaml.safe_load(rendered(torque_server="head.cluster.local"))
    written = files(config)
    assert written["/var/spool/torque/server_name"] == "head.cluster.local\n"
    mom_config = written["/var/spool/torque/mom_priv/config"].splitlines()
    assert "$pbsserver head.cluster.local" in mom_config
    assert ["systemctl", "restart", "pbs_mom.service"] in config["runcmd"]


def test_readiness_is_signalled_after_the_mom_starts() -> None:
    commands = yaml.safe_load(rendered())["runcmd"]
    ready = commands.index(["touch", "/run/dynamictorque-ready"])
    assert ready > commands.index(["systemctl", "restart", "pbs_mom.service"])


def test_every_placeholder_is_filled_and_literal_dollars_survive() -> None:
    text = rendered()
    for placeholder in ("$hostname", "$torque_server", "$pool", "${", "$$"):
        assert placeholder not in text
    assert "pool=cloud" in files(yaml.safe_load(text))["/etc/dynamictorque-node"]
    assert "$(hostname -I" in text
    assert "$UPTIME" in text


def test_the_template_holds_no_secrets() -> None:
    text = TEMPLATE.read_text(encoding="utf-8").lower()
    for word in ("password", "passwd", "private key", "token", "ssh_authorized_keys"):
        assert word not in text


def cloud_init_schema(cloud_init: str, path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([cloud_init, "schema", "--config-file", str(path)],
                          capture_output=True, text=True, timeout=SCHEMA_SECONDS, check=False)


def test_cloud_init_accepts_the_rendered_user_data(cloud_init: str, tmp_path: Path) -> None:
    path = tmp_path / "user-data"
    path.write_text(rendered(), encoding="utf-8")
    result = cloud_init_schema(cloud_init, path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Valid cloud-config" in result.stdout


def test_cloud_init_schema_check_rejects_a_broken_config(cloud_init: str,
                                                         tmp_path: Path) -> None:
    """The check above would catch a mistake, such as write_files given as a string."""
    path = tmp_path / "user-data"
    path.write_text(rendered().replace("write_files:\n", "write_files: oops\nignored:\n"),
                    encoding="utf-8")
    assert cloud_init_schema(cloud_init, path).returncode != 0
