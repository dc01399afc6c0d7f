"""dtadmin against a live API on loopback: every subcommand and old flag, output, exit codes.

The reconciler is not running here: intents stay pending unless a test completes them in
the store as the reconciler would (test_end_to_end.py runs the real one).
"""
from __future__ import annotations

import json
import socket
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest

from admin.cli import main, translate_legacy
from dtserver.actions import ExpireHint, JobVerdict, LaunchInstance, Plan, VerdictStatus
from dtserver.model import ErrorKind, IntentKind, IntentStatus, NodeState, PoolHealth
from dtserver.store import PassReport
from dtserver.store.sqlite import SqliteStore
from tests.admin.conftest import Service, write_token
from tests.api.builders import T0, record

FAST_POLL = ["--poll", "0.05"]
WAIT = [*FAST_POLL, "--wait-timeout", "10"]


def fill(store: SqliteStore) -> None:
    store.insert_record(record("cloud-001", state=NodeState.IDLE, address="10.0.0.1"))
    store.insert_record(record("cloud-002", state=NodeState.BUSY))
    store.insert_record(record("gpu-001", pool="gpu", state=NodeState.FAILED, cores=8,
                               reason="boot timeout"))
    store.insert_record(record("cloud-009", state=NodeState.DELETED))
    store.save_pool_health(PoolHealth("gpu", consecutive_failures=5, last_error=ErrorKind.BOOT,
                                      backoff_until=T0 + timedelta(minutes=5), stopped=True))
    store.save_pass(PassReport(time=T0, duration_seconds=0.5, ok=True, summary={}))
    store.save_plan(T0, Plan(
        actions=(LaunchInstance("cloud-003", "cloud", "m1.large", 4, "demand: 12.vm"),
                 ExpireHint(3, "matched job 12.vm")),
        verdicts=(JobVerdict("12.vm", VerdictStatus.LAUNCHING, "launching cloud-003", "cloud"),
                  JobVerdict("13.vm", VerdictStatus.WAITING_CAPACITY,
                             "pool cloud at max_nodes=3", "cloud"),
                  JobVerdict("14[1].vm", VerdictStatus.NOT_ELIGIBLE, "held (Hold_Types=u)"),
                  JobVerdict("14[2].vm", VerdictStatus.NOT_ELIGIBLE, "held (Hold_Types=u)")),
        notes=("pool gpu stopped",)))
    store.add_event(T0, "launch", "cloud-001 launching (m1.large)", hostname="cloud-001",
                    pool="cloud")
    store.add_event(T0, "failure", "gpu-001: boot timeout", hostname="gpu-001", pool="gpu")


def complete_when_recorded(store: SqliteStore, status: IntentStatus, message: str
                           ) -> threading.Thread:
    """Play the reconciler for one intent: complete the first one that appears."""
    def run() -> None:
        for _ in range(400):
            pending = store.intents(pending_only=True)
            if pending:
                store.complete_intent(pending[0].id, status, message, T0)
                return
            time.sleep(0.025)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


# -- reading -------------------------------------------------------------------------------

@pytest.mark.parametrize("argv", [["info"], ["-i"]])
def test_info_shows_mode_pools_nodes_queue_and_events(service: Service, capsys, argv) -> None:
    fill(service.store)
    service.clock.advance(90)

    assert service.dtadmin(*argv) == 0

    out = capsys.readouterr().out
    assert "mode: active" in out
    assert "last pass: 1m30s ago, ok, took 0.50 s" in out
    assert "gpu    1      0      failed 1        5 failures (boot), backoff until " in out
    assert "STOPPED: dtadmin reset-pool gpu" in out
    assert "cloud-001  cloud  idle    1m30s  4      m1.large  10.0.0.1" in out
    assert "cloud-009" not in out
    assert "queue (1m30s ago): launching 1, not-eligible 2, waiting-capacity 1" in out
    assert "note: pool gpu stopped" in out
    assert "gpu-001: boot timeout" in out


def test_info_json_is_the_status_json(service: Service, capsys) -> None:
    fill(service.store)

    assert service.dtadmin("info", "--json") == 0

    body = json.loads(capsys.readouterr().out)
    assert body["nodes"] == {"busy": 1, "failed": 1, "idle": 1}
    assert body["pools"]["gpu"]["health"]["stopped"] is True


def test_info_on_a_fresh_service_says_nothing_is_recorded(service: Service, capsys) -> None:
    assert service.dtadmin("info") == 0

    out = capsys.readouterr().out
    assert "last pass: none recorded" in out
    assert "no owned nodes" in out
    assert "queue: no plan recorded yet" in out


@pytest.mark.parametrize("argv", [["nodes"], ["-l"], ["-w"]])
def test_nodes_lists_live_nodes_as_an_aligned_table(service: Service, capsys, argv) -> None:
    fill(service.store)
    service.clock.advance(3700)

    assert service.dtadmin(*argv) == 0

    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["NODE", "POOL", "STATE", "AGE", "CORES", "FLAVOR", "ADDRESS",
                                "REASON"]
    assert [line.split()[0] for line in lines[1:]] == ["cloud-001", "cloud-002", "gpu-001"]
    assert lines[1].split()[:4] == ["cloud-001", "cloud", "idle", "1h01m"]
    assert lines[3].endswith("boot timeout")
    # Aligned: every column starts at the same offset on every line.
    assert len({line.index("cloud") for line in lines[1:3]}) == 1


def test_nodes_all_includes_deleted_records(service: Service, capsys) -> None:
    fill(service.store)

    assert service.dtadmin("nodes", "--all") == 0

    assert "cloud-009  cloud  deleted" in capsys.readouterr().out


@pytest.mark.parametrize("argv", [["--json", "nodes"], ["nodes", "--json"], ["--json", "-l"],
                                  ["-l", "--json"]])
def test_nodes_json_is_the_api_json(service: Service, capsys, argv) -> None:
    fill(service.store)

    assert service.dtadmin(*argv) == 0

    body = json.loads(capsys.readouterr().out)
    assert body["time"] == "2026-01-02T03:04:05Z"
    assert [node["hostname"] for node in body["nodes"]] == ["cloud-001", "cloud-002", "gpu-001"]


@pytest.mark.parametrize("argv", [["node", "gpu-001"], ["-d", "gpu-001"]])
def test_node_detail_shows_the_record_and_its_history(service: Service, capsys, argv) -> None:
    fill(service.store)
    service.clock.advance(60)

    assert service.dtadmin(*argv) == 0

    out = capsys.readouterr().out
    assert "state       failed for 1m00s (since 2026-01-02T03:04:05Z)" in out
    assert "reason      boot timeout" in out
    assert "flavor      m1.large (8 cores)" in out
    assert "history (newest first):" in out
    assert "failure  gpu-001: boot timeout" in out


def test_node_detail_json(service: Service, capsys) -> None:
    fill(service.store)

    assert service.dtadmin("node", "cloud-001", "--json") == 0

    body = json.loads(capsys.readouterr().out)
    assert body["node"]["address"] == "10.0.0.1"
    assert [event["kind"] for event in body["history"]] == ["launch"]


@pytest.mark.parametrize("argv", [["node", "nowhere"], ["-d", "nowhere"]])
def test_unknown_node_exits_5_with_the_reason(service: Service, capsys, argv) -> None:
    assert service.dtadmin(*argv) == 5

    assert "dtadmin: no node record for 'nowhere'" in capsys.readouterr().err


def test_plan_lists_actions_job_verdicts_and_notes(service: Service, capsys) -> None:
    fill(service.store)

    assert service.dtadmin("plan") == 0

    out = capsys.readouterr().out
    assert "plan of the last pass at 2026-01-02T03:04:05Z" in out
    assert "LaunchInstance  cloud-003  demand: 12.vm" in out
    assert "13.vm     waiting-capacity  cloud  pool cloud at max_nodes=3" in out
    assert "  pool gpu stopped" in out


def test_plan_json_and_plan_before_any_pass(service: Service, capsys) -> None:
    assert service.dtadmin("plan") == 0
    assert "no plan recorded yet" in capsys.readouterr().out

    fill(service.store)
    assert service.dtadmin("plan", "--json") == 0
    body = json.loads(capsys.readouterr().out)
    assert body["plan"]["verdicts"][0]["job_id"] == "12.vm"


@pytest.mark.parametrize("job_id", ["13.vm", "13"])
def test_why_gives_the_planner_reason(service: Service, capsys, job_id: str) -> None:
    fill(service.store)

    assert service.dtadmin("why", job_id) == 0

    out = capsys.readouterr().out
    assert "13.vm: waiting-capacity (pool cloud): pool cloud at max_nodes=3" in out
    assert "(from the plan of the last pass at 2026-01-02T03:04:05Z)" in out


def test_why_of_an_array_lists_its_subjobs(service: Service, capsys) -> None:
    fill(service.store)

    assert service.dtadmin("why", "14[].vm", "--json") == 0

    body = json.loads(capsys.readouterr().out)
    assert [verdict["job_id"] for verdict in body["verdicts"]] == ["14[1].vm", "14[2].vm"]


def test_why_of_a_job_not_in_the_plan_exits_5(service: Service, capsys) -> None:
    fill(service.store)

    assert service.dtadmin("why", "99.vm") == 5

    assert "job 99.vm is not queued / not seen in the last pass" in capsys.readouterr().err


def test_why_before_any_pass_exits_5(service: Service, capsys) -> None:
    assert service.dtadmin("why", "1.vm") == 5

    assert "no plan recorded yet" in capsys.readouterr().err


# -- sleep mode -----------------------------------------------------------------------------

def test_sleep_and_wake(service: Service, capsys) -> None:
    assert service.dtadmin("sleep") == 0
    assert service.store.is_sleeping() is True
    assert "sleep mode on: no new launches; deletions continue" in capsys.readouterr().out

    assert service.dtadmin("wake", "--json") == 0
    assert service.store.is_sleeping() is False
    assert json.loads(capsys.readouterr().out) == {"sleeping": False}


@pytest.mark.parametrize("argv", [["toggle-sleep"], ["-s"]])
def test_old_s_flag_toggles_sleep_mode(service: Service, capsys, argv) -> None:
    assert service.dtadmin(*argv) == 0
    assert service.store.is_sleeping() is True

    assert service.dtadmin(*argv) == 0
    assert service.store.is_sleeping() is False
    assert "sleep mode off" in capsys.readouterr().out


# -- intents --------------------------------------------------------------------------------
# By default an intent command waits for the reconciler's decision; --wait follows the
# intent to its end, --no-wait returns once it is recorded.

def test_kill_waits_for_the_decision_and_says_what_follows(service: Service, capsys) -> None:
    fill(service.store)
    helper = complete_when_recorded(service.store, IntentStatus.DONE,
                                    "cloud-001 offlined; deleted on the next pass")

    # Nothing deletes the node here: exit 0 means only the decision was awaited.
    assert service.dtadmin("kill", "cloud-001", *FAST_POLL) == 0

    helper.join(timeout=10)
    out = capsys.readouterr().out
    assert "(kill cloud-001): done: cloud-001 offlined; deleted on the next pass" in out
    assert out.rstrip().endswith("`dtadmin node cloud-001` follows its deletion")


@pytest.mark.parametrize("argv", [["kill", "cloud-002", *FAST_POLL],
                                  ["kill", "cloud-002", "--wait", *WAIT], ["-k", "cloud-002"]])
def test_kill_of_a_busy_node_exits_1_naming_the_job(service: Service, capsys, argv) -> None:
    fill(service.store)
    helper = complete_when_recorded(service.store, IntentStatus.REFUSED,
                                    "cloud-002 runs job 21.vm; use drain-all to wait for it")

    assert service.dtadmin(*argv) == 1

    helper.join(timeout=10)
    assert "kill cloud-002 refused: cloud-002 runs job 21.vm" in capsys.readouterr().err


@pytest.mark.parametrize("wait", [[], ["--wait"]])
def test_kill_gives_up_with_exit_3_when_no_reconciler_decides(service: Service, capsys,
                                                              wait) -> None:
    fill(service.store)

    assert service.dtadmin("kill", "cloud-001", *wait, *FAST_POLL, "--wait-timeout", "0.3") == 3

    assert "still pending; is the reconciler running?" in capsys.readouterr().err


def test_the_decision_wait_is_bounded_without_wait_timeout(service: Service, capsys,
                                                           monkeypatch) -> None:
    monkeypatch.setattr("admin.cli.DECISION_WAIT_SECONDS", 0.3)

    assert service.dtadmin("drain-all", *FAST_POLL) == 3

    assert "gave up after 0.3 s" in capsys.readouterr().err


def test_kill_no_wait_records_an_intent_and_says_how_to_follow_it(service: Service,
                                                                  capsys) -> None:
    fill(service.store)

    assert service.dtadmin("kill", "cloud-001", "--no-wait") == 0

    (intent,) = service.store.intents()
    assert (intent.kind, intent.target, intent.status) == (IntentKind.KILL, "cloud-001",
                                                           IntentStatus.PENDING)
    out = capsys.readouterr().out
    assert f"intent {intent.id} (kill cloud-001): pending" in out
    assert f"`dtadmin intent {intent.id}` shows the outcome" in out


def test_kill_of_an_unknown_node_exits_5(service: Service, capsys) -> None:
    fill(service.store)

    assert service.dtadmin("kill", "cloud-009") == 5

    assert "no live node record for 'cloud-009'" in capsys.readouterr().err
    assert service.store.intents() == ()


def test_kill_wait_follows_the_node_until_it_is_deleted(service: Service, capsys) -> None:
    fill(service.store)
    helper = complete_when_recorded(service.store, IntentStatus.DONE, "cloud-001 offlined")

    def delete_later() -> None:
        time.sleep(0.3)
        service.store.update_record("rec-cloud-001", state=NodeState.DELETED)

    deleter = threading.Thread(target=delete_later, daemon=True)
    deleter.start()
    assert service.dtadmin("kill", "cloud-001", "--wait", *WAIT) == 0

    deleter.join(timeout=10)
    helper.join(timeout=10)
    out = capsys.readouterr().out
    assert "(kill cloud-001): done: cloud-001 offlined" in out
    assert out.rstrip().endswith("cloud-001 deleted")


def test_repeated_kill_reuses_the_pending_intent(service: Service, capsys) -> None:
    fill(service.store)

    assert service.dtadmin("kill", "cloud-001", "--no-wait", "--json") == 0
    assert service.dtadmin("kill", "cloud-001", "--no-wait", "--json") == 0

    assert len(service.store.intents()) == 1


@pytest.mark.parametrize("argv, kind", [(["kill", "cloud-001"], "kill"),
                                        (["drain-all"], "drain-all"),
                                        (["reset-pool", "gpu"], "reset-pool")])
def test_intent_command_json_is_one_document_with_the_decision(service: Service, capsys,
                                                               argv, kind) -> None:
    fill(service.store)
    helper = complete_when_recorded(service.store, IntentStatus.DONE, "carried out")

    assert service.dtadmin(*argv, "--json", *FAST_POLL) == 0

    helper.join(timeout=10)
    body = json.loads(capsys.readouterr().out)
    assert (body["intent"]["kind"], body["intent"]["status"]) == (kind, "done")


def test_drain_all_waits_for_the_decision_not_for_the_nodes(service: Service,
                                                            capsys) -> None:
    fill(service.store)
    helper = complete_when_recorded(service.store, IntentStatus.DONE,
                                    "2 nodes draining; sleep mode on; each node is deleted "
                                    "when its jobs end")

    assert service.dtadmin("drain-all", *FAST_POLL) == 0

    helper.join(timeout=10)
    out = capsys.readouterr().out
    assert "(drain-all): done: 2 nodes draining" in out
    assert out.rstrip().endswith("`dtadmin nodes` follows them")


def test_drain_all_no_wait_records_an_intent(service: Service, capsys) -> None:
    assert service.dtadmin("drain-all", "--no-wait") == 0

    (intent,) = service.store.intents()
    assert (intent.kind, intent.status) == (IntentKind.DRAIN_ALL, IntentStatus.PENDING)
    assert "(drain-all): pending" in capsys.readouterr().out


@pytest.mark.parametrize("argv", [["drain-all", "--wait", *WAIT], ["-f"]])
def test_drain_all_wait_returns_once_no_node_is_left(service: Service, capsys, argv) -> None:
    helper = complete_when_recorded(service.store, IntentStatus.DONE,
                                    "0 nodes draining; sleep mode on")

    assert service.dtadmin(*argv) == 0

    helper.join(timeout=10)
    assert "all nodes drained and deleted" in capsys.readouterr().out


def test_reset_pool_prints_the_decision(service: Service, capsys) -> None:
    helper = complete_when_recorded(service.store, IntentStatus.DONE, "pool gpu resumed")

    assert service.dtadmin("reset-pool", "gpu", *FAST_POLL) == 0

    helper.join(timeout=10)
    assert "(reset-pool gpu): done: pool gpu resumed" in capsys.readouterr().out


@pytest.mark.parametrize("wait", [[], ["--wait"]])
def test_reset_pool_refusal_exits_1(service: Service, capsys, wait) -> None:
    helper = complete_when_recorded(service.store, IntentStatus.REFUSED, "no pool named nope")

    assert service.dtadmin("reset-pool", "nope", *wait, *WAIT) == 1

    helper.join(timeout=10)
    assert "reset-pool nope refused: no pool named nope" in capsys.readouterr().err


def test_reset_pool_no_wait_records_the_intent(service: Service, capsys) -> None:
    assert service.dtadmin("reset-pool", "gpu", "--no-wait", "--json") == 0

    body = json.loads(capsys.readouterr().out)
    assert (body["intent"]["kind"], body["intent"]["target"], body["intent"]["status"]) == \
        ("reset-pool", "gpu", "pending")


def test_intent_shows_the_outcome(service: Service, capsys) -> None:
    intent = service.store.add_intent(IntentKind.DRAIN_ALL, None, T0)
    service.store.complete_intent(intent.id, IntentStatus.DONE, "3 nodes draining",
                                  T0 + timedelta(seconds=10))

    assert service.dtadmin("intent", str(intent.id)) == 0
    assert service.dtadmin("intent", "999") == 5

    captured = capsys.readouterr()
    assert (f"intent {intent.id} (drain-all): done: 3 nodes draining "
            "(at 2026-01-02T03:04:15Z)") in captured.out
    assert "no intent 999" in captured.err


# -- failures and configuration ---------------------------------------------------------------

def test_wrong_token_exits_4(service: Service, tmp_path: Path, capsys) -> None:
    wrong = write_token(tmp_path / "wrong.token", "not-the-token")

    assert main(["--url", service.url, "--token-file", str(wrong), "sleep"]) == 4

    assert "the service refused the admin token" in capsys.readouterr().err
    assert service.store.is_sleeping() is False


def test_missing_token_exits_4_but_reads_need_none(service: Service, capsys) -> None:
    assert main(["--url", service.url, "drain-all"]) == 4
    assert "no admin token" in capsys.readouterr().err

    assert main(["--url", service.url, "nodes"]) == 0


def test_unreadable_token_file_exits_4(service: Service, tmp_path: Path, capsys) -> None:
    assert main(["--url", service.url, "--token-file", str(tmp_path / "none"), "wake"]) == 4

    assert "cannot read the admin token file" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["info"], ["sleep"], ["why", "1.vm"], ["-i"]])
def test_service_down_exits_3(tmp_path: Path, capsys, argv) -> None:
    token = write_token(tmp_path / "admin.token")
    # A port bound but not listening: connections to it are refused.
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{taken.getsockname()[1]}"

        assert main(["--url", url, "--token-file", str(token), *argv]) == 3

    assert f"cannot reach the dynamictorque API at {url}" in capsys.readouterr().err


def test_a_failing_service_exits_3_with_its_message(service: Service, capsys) -> None:
    service.store.close()

    assert service.dtadmin("nodes") == 3

    assert "the service failed (HTTP 503): the state database is unavailable" in \
        capsys.readouterr().err


@pytest.mark.parametrize("argv", [[], ["frobnicate"], ["info", "--watch", "0"],
                                  ["info", "--watch", "soon"], ["-c", "5"], ["-k"],
                                  ["-i", "-k", "x"], ["kill"], ["intent", "x"]])
def test_usage_errors_exit_2(argv, capsys) -> None:
    assert main(argv) == 2

    assert "usage: dtadmin" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["kill", "x", "--wait", "--no-wait"],
                                  ["drain-all", "--no-wait", "--wait"],
                                  ["reset-pool", "gpu", "--wait", "--no-wait"],
                                  ["-k", "x", "--no-wait"]])
def test_wait_and_no_wait_together_are_a_usage_error(argv, capsys) -> None:
    assert main(argv) == 2

    assert "not allowed with argument" in capsys.readouterr().err


def test_help_exits_0(capsys) -> None:
    assert main(["--help"]) == 0

    assert "Exit codes: 0 ok, 1 refused" in capsys.readouterr().out


def test_url_and_token_come_from_the_environment(service: Service, monkeypatch,
                                                 capsys) -> None:
    monkeypatch.setenv("DTADMIN_URL", service.url)
    monkeypatch.setenv("DTADMIN_TOKEN_FILE", str(service.token_file))

    assert main(["sleep"]) == 0

    assert service.store.is_sleeping() is True


def test_url_and_token_come_from_the_config_file(service: Service, monkeypatch,
                                                 tmp_path: Path) -> None:
    config = tmp_path / "dtadmin.conf"
    config.write_text(f"[dtadmin]\nurl = {service.url}\ntoken_file = {service.token_file}\n"
                      "timeout = 5\n", encoding="utf-8")
    monkeypatch.setenv("DTADMIN_CONFIG", str(config))

    assert main(["sleep"]) == 0

    assert service.store.is_sleeping() is True


def test_user_config_in_home_is_read(service: Service, monkeypatch, tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / ".config").mkdir(parents=True)
    (home / ".config" / "dtadmin.conf").write_text(
        f"[dtadmin]\nurl: {service.url}\ntoken_file: {service.token_file}\n", encoding="utf-8")
    monkeypatch.delenv("DTADMIN_CONFIG")
    monkeypatch.setenv("HOME", str(home))

    assert main(["wake"]) == 0


def test_flags_beat_the_environment(service: Service, monkeypatch) -> None:
    monkeypatch.setenv("DTADMIN_URL", "http://127.0.0.1:1")

    assert service.dtadmin("nodes") == 0


def test_unknown_config_key_is_a_usage_error(monkeypatch, tmp_path: Path, capsys) -> None:
    config = tmp_path / "dtadmin.conf"
    config.write_text("[dtadmin]\nadress = http://127.0.0.1:8080\n", encoding="utf-8")
    monkeypatch.setenv("DTADMIN_CONFIG", str(config))

    assert main(["nodes"]) == 2

    assert "unknown key 'adress'" in capsys.readouterr().err


@pytest.mark.parametrize("old, new", [
    (["-i"], ["info"]),
    (["-i", "-c", "5"], ["info", "--watch", "5.0"]),
    (["-c", "2", "-i"], ["info", "--watch", "2.0"]),
    (["-s"], ["toggle-sleep"]),
    (["-k", "cloud-001"], ["kill", "cloud-001", "--wait"]),
    (["-f"], ["drain-all", "--wait"]),
    (["-d", "cloud-001"], ["node", "cloud-001"]),
    (["-l"], ["nodes"]),
    (["-w", "--json"], ["nodes", "--json"]),
    (["--url", "http://h:1", "-l"], ["--url", "http://h:1", "nodes"]),
    (["nodes", "-l"], ["nodes", "-l"]),
    (["-f", "--wait-timeout", "60"], ["drain-all", "--wait", "--wait-timeout", "60"]),
])
def test_old_flags_map_onto_subcommands(old: list[str], new: list[str]) -> None:
    assert translate_legacy(old) == new
