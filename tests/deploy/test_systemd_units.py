"""deploy/systemd: the units verify with systemd, are hardened, and match the code they run."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from dtserver.cli import db_main
from dtserver.config import Settings

ROOT = Path(__file__).resolve().parents[2]
UNITS = ROOT / "deploy" / "systemd"
UNIT_NAMES = ("dtserver-api.service", "dtserver-reconciler.service")
INSTALLED_BIN = "/opt/dynamictorque/bin/"
VERIFY_SECONDS = 60


def directives(name: str) -> dict[str, list[str]]:
    """Key -> values over all sections; systemd allows a key more than once."""
    values: dict[str, list[str]] = {}
    for line in (UNITS / name).read_text(encoding="utf-8").splitlines():
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, _, value = line.partition("=")
        values.setdefault(key.strip(), []).append(value.strip())
    return values


def installed_at(prefix: Path, tmp_path: Path) -> list[Path]:
    """The units as they would be with the package installed at `prefix`: verify checks
    that every ExecStart program exists, and here it lives in the test's virtualenv."""
    copies = []
    for name in UNIT_NAMES:
        copy = tmp_path / name
        copy.write_text((UNITS / name).read_text(encoding="utf-8")
                        .replace(INSTALLED_BIN, f"{prefix}/"), encoding="utf-8")
        copies.append(copy)
    return copies


def test_units_pass_systemd_analyze_verify(systemd_analyze: str, tmp_path: Path) -> None:
    bin_dir = Path(sys.executable).parent
    for program in ("gunicorn", "dtserver-reconciler", "dtserver-db"):
        assert (bin_dir / program).exists(), f"{program} is not installed next to python"
    copies = installed_at(bin_dir, tmp_path)
    result = subprocess.run([systemd_analyze, "verify", *map(str, copies)],
                            capture_output=True, text=True, timeout=VERIFY_SECONDS,
                            check=False)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    # Unknown keys and bad values are only warnings (exit 0), each naming the unit.
    assert [line for line in output.splitlines() if "dtserver-" in line] == []


def test_systemd_analyze_verify_reports_a_bad_directive(systemd_analyze: str,
                                                        tmp_path: Path) -> None:
    """The check above would catch a mistake: a misspelled value names the unit."""
    unit = tmp_path / "dtserver-broken.service"
    unit.write_text("[Service]\nExecStart=/bin/true\nProtectSystem=stric\n", encoding="utf-8")
    result = subprocess.run([systemd_analyze, "verify", str(unit)], capture_output=True,
                            text=True, timeout=VERIFY_SECONDS, check=False)
    assert "dtserver-broken.service" in result.stdout + result.stderr


@pytest.mark.parametrize("name", UNIT_NAMES)
def test_unit_runs_as_a_dedicated_user_with_hardening(name: str) -> None:
    unit = directives(name)
    assert unit["Group"] == ["dynamictorque"]
    assert unit["NoNewPrivileges"] == ["yes"]
    assert unit["PrivateTmp"] == ["yes"]
    assert unit["ProtectSystem"] == ["strict"]
    assert "/var/lib/dynamictorque" in unit["ReadWritePaths"]
    assert Path(unit["ReadWritePaths"][0]) == Settings().state_dir
    assert unit["Restart"] == ["on-failure"]
    assert unit["CapabilityBoundingSet"] == [""]


def test_the_api_runs_as_its_own_user_in_the_reconcilers_group() -> None:
    """A compromised API must not hold the reconciler's TORQUE manager rights (granted to
    dynamictorque@HOST) nor read what only that user reads (clouds.yaml)."""
    api, reconciler = directives("dtserver-api.service"), directives(
        "dtserver-reconciler.service")
    assert reconciler["User"] == ["dynamictorque"]
    assert api["User"] == ["dynamictorque-api"]
    assert api["Group"] == reconciler["Group"] == ["dynamictorque"]
    assert "-/etc/openstack" in api["InaccessiblePaths"][0].split()
    assert "BindPaths" not in api                       # no trqauthd socket either


def test_only_the_reconciler_unit_declares_the_state_directory() -> None:
    """systemd chowns a StateDirectory to its unit's user at each start: declared by both
    units, it would flip between the two users."""
    (state,) = directives("dtserver-reconciler.service")["StateDirectory"]
    assert Path("/var/lib") / state == Settings().state_dir
    assert "StateDirectory" not in directives("dtserver-api.service")
    assert "StateDirectoryMode" not in directives("dtserver-api.service")


def test_the_state_directory_and_files_are_shared_through_the_group() -> None:
    """Group-writable so the API can create SQLite's -wal and -shm files; sticky so it can
    neither delete nor replace the reconciler's files (dt.db, the FIFO, a hosts_file);
    setgid so files made there by hand get the group too. Files are made group-writable."""
    reconciler = directives("dtserver-reconciler.service")
    assert reconciler["StateDirectoryMode"] == ["3775"]
    for name in UNIT_NAMES:
        assert directives(name)["UMask"] == ["0007"], name


def test_reconciler_unit_reaches_trqauthd_through_its_private_tmp() -> None:
    """TORQUE 6.1 clients talk to trqauthd over /tmp/trqauthd-unix; PrivateTmp hides it."""
    unit = directives("dtserver-reconciler.service")
    assert unit["BindPaths"] == ["/tmp/trqauthd-unix"]
    assert "AF_UNIX" in unit["RestrictAddressFamilies"][0].split()
    assert unit["PartOf"] == ["trqauthd.service"]


def test_api_unit_reads_the_reconcilers_configuration() -> None:
    """One file for both: [api] bind and the tokens, and the state directory, are used."""
    environment = dict(value.partition("=")[::2]
                       for value in directives("dtserver-api.service")["Environment"])
    assert environment["DT_CONFIG"] == "/etc/dynamictorque/dynamic_torque.conf"
    assert not {"DT_DB_PATH", "DT_WAKEUP_PATH", "DT_TOKEN_FILE", "DT_BIND"} & set(environment)
    assert directives("dtserver-reconciler.service")["ExecStart"] == [
        f"{INSTALLED_BIN}dtserver-reconciler -c {environment['DT_CONFIG']}"]


def test_reconciler_unit_runs_the_console_scripts_with_the_system_config() -> None:
    unit = directives("dtserver-reconciler.service")
    config = "/etc/dynamictorque/dynamic_torque.conf"
    assert unit["ExecStartPre"] == [f"{INSTALLED_BIN}dtserver-db migrate -c {config}"]
    assert unit["ExecStart"] == [f"{INSTALLED_BIN}dtserver-reconciler -c {config}"]


def test_the_migrate_step_of_the_reconciler_unit_creates_the_database(tmp_path: Path) -> None:
    state = tmp_path / "state"
    config = tmp_path / "dynamic_torque.conf"
    config.write_text(f"[global]\nstate_dir: {state}\n[cloud]\ncloud_image_uuid: image-1\n",
                      encoding="utf-8")
    assert db_main(["migrate", "-c", str(config)]) == 0
    assert (state / "dt.db").exists()
