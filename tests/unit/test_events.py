"""Operator event commands: argument lists, placeholders, timeouts, failures only logged."""
from __future__ import annotations

import logging
import sys

from dtserver.config import EventCommands
from dtserver.events import EventRunner, expand
from dtserver.model import NodeEvent
from tests.sim.scenario import Cluster, scenario_policy

EVENT = NodeEvent("post_add_node", "vnode-001", "169.254.80.100", "rec-1", "cloud", "joined")


def test_placeholders_fill_whole_arguments_and_never_split_them():
    evil = NodeEvent("post_add_node", "a b; rm -rf /", "1.2.3.4", "r")
    assert expand(["/bin/notify", "{0}", "{1}", "--id={record_id}", "{nope}", "{"], evil) == [
        "/bin/notify", "a b; rm -rf /", "1.2.3.4", "--id=r", "{nope}", "{"]


def test_the_command_runs_without_a_shell_and_gets_its_arguments(tmp_path):
    out = tmp_path / "out"
    script = f"import sys; open({str(out)!r}, 'w').write(' '.join(sys.argv[1:]))"
    runner = EventRunner(EventCommands(post_add_node=(sys.executable, "-c", script, "{0}",
                                                      "{address}")))
    runner(EVENT)
    runner.close()
    assert out.read_text() == "vnode-001 169.254.80.100"


def test_a_hung_or_failing_command_is_logged_and_never_raises(caplog):
    caplog.set_level(logging.WARNING)
    runner = EventRunner(EventCommands(
        post_add_node=(sys.executable, "-c", "import time; time.sleep(30)"),
        post_remove_node=(sys.executable, "-c", "import sys; sys.exit(3)"),
        boot_failed=("/nonexistent/command",), timeout_seconds=0.5))
    for name in ("post_add_node", "post_remove_node", "boot_failed", "post_vm_destroy"):
        runner(NodeEvent(name, "vnode-001"))
    runner.close()
    text = caplog.text
    assert "timed out" in text and "status=3" in text and "failed to start" in text


def test_the_reconciler_announces_a_node_from_provision_to_destroy(tmp_path):
    cluster = Cluster(tmp_path, scenario_policy())
    cluster.submit({"nodes": "1:ppn=1"}, 60)
    cluster.run(1200)
    names = [event.name for event in cluster.node_events]
    assert names == ["post_vm_provision", "post_add_node", "post_remove_node",
                     "post_vm_destroy"]
    assert cluster.node_events[1].address.startswith("169.254.")


def test_no_valid_host_is_a_capacity_error_and_a_boot_timeout_a_boot_failure(tmp_path):
    cluster = Cluster(tmp_path, scenario_policy())
    cluster.world.nova.error_on_boot(count=1)
    cluster.world.nova.never_active(count=1)
    cluster.submit({"nodes": "1:ppn=1"}, 60)
    cluster.run(1500)
    names = [event.name for event in cluster.node_events]
    assert names[0] == "capacity_error" and "boot_failed" in names


def test_a_failing_command_is_logged_with_its_secrets_masked(caplog):
    caplog.set_level(logging.WARNING)
    runner = EventRunner(EventCommands(post_add_node=(
        sys.executable, "-c", "import sys; sys.exit(3)", "--token", "abc123",
        "https://hook.example.org/x?token=qwe789", "{0}")))
    runner(EVENT)
    runner.close()

    assert "status=3" in caplog.text and "vnode-001" in caplog.text
    assert "abc123" not in caplog.text and "qwe789" not in caplog.text
