"""Human output of dtadmin: aligned tables and short summaries from the API's JSON.

Ages are computed against the service's own `time`, never the local clock, so they are
right even when the admin host's clock is not.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any, Iterable, Mapping, Sequence

NODE_COLUMNS = ("NODE", "POOL", "STATE", "AGE", "CORES", "FLAVOR", "ADDRESS", "REASON")
STATE_ORDER = ("launching", "booting", "registered", "idle", "busy", "offline", "deleting",
               "failed", "unknown", "deleted")


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """Left-aligned columns two spaces apart; the last column is not padded."""
    cells = [[str(value) for value in headers]]
    cells += [["" if value is None else str(value) for value in row] for row in rows]
    widths = [max(len(row[index]) for row in cells) for index in range(len(headers))]
    lines = []
    for row in cells:
        padded = [value.ljust(width) for value, width in zip(row[:-1], widths)]
        lines.append("  ".join(padded + [row[-1]]).rstrip())
    return "\n".join(lines) + "\n"


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text)


def format_age(seconds: float) -> str:
    """45s, 12m05s, 3h05m, 2d04h."""
    whole = max(0, int(seconds))
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    if whole < 86400:
        return f"{whole // 3600}h{whole % 3600 // 60:02d}m"
    return f"{whole // 86400}d{whole % 86400 // 3600:02d}h"


def age(then: str | None, now: str) -> str:
    if not then:
        return ""
    return format_age((parse_time(now) - parse_time(then)).total_seconds())


def counts(mapping: Mapping[str, int]) -> str:
    if not mapping:
        return "none"
    return ", ".join(f"{key} {value}" for key, value in mapping.items())


def _state_rank(state: str) -> int:
    return STATE_ORDER.index(state) if state in STATE_ORDER else len(STATE_ORDER)


def node_rows(nodes: Sequence[Mapping[str, Any]], now: str) -> list[list[Any]]:
    ordered = sorted(nodes, key=lambda node: (node["pool"], _state_rank(node["state"]),
                                              node["hostname"]))
    return [[node["hostname"], node["pool"], node["state"] + (
                f" ({node['drain']} drain)" if node.get("drain") else ""),
             age(node["state_since"], now), node["cores"], node["flavor"],
             node.get("address") or "", node.get("reason") or ""]
            for node in ordered]


def render_nodes(body: Mapping[str, Any]) -> str:
    nodes = body["nodes"]
    if not nodes:
        return "no owned nodes\n"
    return table(NODE_COLUMNS, node_rows(nodes, body["time"]))


def _health(health: Mapping[str, Any] | None) -> str:
    if health is None or not (health["consecutive_failures"] or health["stopped"]):
        return "ok"
    words = [f"{health['consecutive_failures']} failures ({health['last_error'] or 'unknown'})"]
    if health["backoff_until"]:
        words.append(f"backoff until {health['backoff_until']}")
    if health["stopped"]:
        words.append("STOPPED: dtadmin reset-pool " + health["pool"])
    return ", ".join(words)


def render_info(status: Mapping[str, Any], nodes: Mapping[str, Any], url: str) -> str:
    """The old `admin.py -i`: mode, last pass, pools, nodes, queue demand, recent events."""
    lines = [f"dynamictorque at {url}, {status['time']}",
             "mode: " + ("SLEEPING (no new launches; deletions continue)"
                         if status["sleeping"] else "active")]
    last_pass = status["last_pass"]
    if last_pass is None:
        lines.append("last pass: none recorded")
    else:
        lines.append(f"last pass: {format_age(last_pass['age_seconds'])} ago, "
                     f"{'ok' if last_pass['ok'] else 'FAILED (TORQUE or cloud unreadable)'}, "
                     f"took {last_pass['duration_seconds']:.2f} s")
    text = "\n".join(lines) + "\n\n"
    if status["pools"]:
        text += table(("POOL", "NODES", "CORES", "STATES", "HEALTH"),
                      [[name, pool["nodes"], pool["cores"], counts(pool["states"]),
                        _health(pool["health"])] for name, pool in status["pools"].items()])
    else:
        text += "no pools with nodes yet\n"
    text += "\n" + render_nodes(nodes)
    plan = status["plan"]
    if plan is None:
        text += "\nqueue: no plan recorded yet\n"
    else:
        text += (f"\nqueue ({format_age(plan['age_seconds'])} ago): {counts(plan['jobs'])}\n"
                 f"planned actions: {counts(plan['actions'])}\n")
        text += "".join(f"note: {note}\n" for note in plan["notes"])
    if status["events"]:
        text += "\nrecent events:\n" + table(
            ("TIME", "KIND", "NODE", "MESSAGE"),
            [[event["time"], event["kind"], event["hostname"] or "", event["message"]]
             for event in status["events"]])
    return text


def render_node(body: Mapping[str, Any]) -> str:
    """The old `admin.py -d NODE`: every field of the record, then its recent history."""
    node, now = body["node"], body["time"]
    fields = [("node", node["hostname"]), ("pool", node["pool"]),
              ("state", f"{node['state']} for {age(node['state_since'], now)} "
                        f"(since {node['state_since']})"),
              ("drain", node.get("drain") or ""), ("reason", node.get("reason") or ""),
              ("flavor", f"{node['flavor']} ({node['cores']} cores)"),
              ("instance", node.get("instance_id") or ""), ("address", node.get("address") or ""),
              ("created", f"{node['created']} ({age(node['created'], now)} ago)"),
              ("down since", node.get("down_since") or ""), ("record", node["id"])]
    width = max(len(name) for name, _ in fields)
    text = "".join(f"{name.ljust(width)}  {value or '-'}\n" for name, value in fields)
    history = body.get("history") or []
    if history:
        text += "\nhistory (newest first):\n" + table(
            ("TIME", "KIND", "MESSAGE"),
            [[event["time"], event["kind"], event["message"]] for event in history])
    return text


def _action_target(action: Mapping[str, Any]) -> str:
    for key in ("hostname", "pool", "instance_id", "hint_id", "intent_id", "record_id"):
        if action.get(key) not in (None, ""):
            return str(action[key])
    return ""


def render_plan(body: Mapping[str, Any]) -> str:
    plan = body.get("plan")
    if plan is None:
        return "no plan recorded yet: the reconciler has not finished a pass\n"
    text = f"plan of the last pass at {body['time']}\n"
    actions = plan.get("actions") or []
    text += "\nactions:\n" + (table(("ACTION", "TARGET", "REASON"),
                                    [[action.get("type", "?"), _action_target(action),
                                      action.get("reason") or action.get("message") or ""]
                                     for action in actions]) if actions else "  none\n")
    verdicts = plan.get("verdicts") or []
    text += "\njobs:\n" + (table(("JOB", "STATUS", "POOL", "REASON"),
                                 [[verdict["job_id"], verdict["status"],
                                   verdict.get("pool") or "", verdict["reason"]]
                                  for verdict in verdicts]) if verdicts else "  none queued\n")
    notes = plan.get("notes") or []
    if notes:
        text += "\nnotes:\n" + "".join(f"  {note}\n" for note in notes)
    return text


def render_why(body: Mapping[str, Any]) -> str:
    lines = []
    for verdict in body["verdicts"]:
        pool = f" (pool {verdict['pool']})" if verdict.get("pool") else ""
        lines.append(f"{verdict['job_id']}: {verdict['status']}{pool}: {verdict['reason']}")
    lines.append(f"(from the plan of the last pass at {body['time']})")
    return "\n".join(lines) + "\n"


def render_intent(intent: Mapping[str, Any]) -> str:
    what = intent["kind"] + (f" {intent['target']}" if intent.get("target") else "")
    text = f"intent {intent['id']} ({what}): {intent['status']}"
    if intent.get("message"):
        text += f": {intent['message']}"
    if intent.get("finished"):
        text += f" (at {intent['finished']})"
    return text + "\n"
