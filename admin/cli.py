"""dtadmin: the administrator's command line, over the dynamictorque HTTP API only.

Explicit subcommands (info, nodes, node, sleep, wake, toggle-sleep, kill, drain-all,
reset-pool, plan, why, intent); Dynamic Torque's admin.py flags are accepted and mapped:
-i (info), -i -c S (info --watch S), -s (toggle-sleep), -k NODE (kill --wait),
-f (drain-all --wait), -d NODE (node), -l and -w (nodes).

kill, drain-all and reset-pool wait for the reconciler's decision, so a refusal exits 1;
--wait follows the intent to its end, --no-wait returns once it is recorded.

Exit codes: 0 ok, 1 refused (a busy node, with the job named), 2 usage, 3 service down
or unreachable (or the reconciler did not act in time), 4 authentication, 5 not found.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable, Sequence, TextIO

from admin import render
from admin.client import (
    AdminError, Client, ExitCode, Refused, ServiceDown, load_connection, path_segment)

# Home the cursor and clear the screen, as watch(1) does between frames.
CLEAR_SCREEN = "\x1b[H\x1b[2J"
DEFAULT_POLL_SECONDS = 1.0
# A decision takes one reconciler pass (10 s by default); a minute allows a slow one.
DECISION_WAIT_SECONDS = 60.0
KILL_WAIT_SECONDS = 600.0
DRAIN_WAIT_SECONDS = 3600.0
RESET_WAIT_SECONDS = 120.0

_GLOBAL_WITH_VALUE = ("--url", "--token-file", "--timeout", "--proxy")
_LEGACY_FLAGS = ("-i", "-s", "-k", "-f", "-d", "-l", "-w", "-c")


@dataclass(frozen=True)
class Waiting:
    timeout: float
    poll: float
    sleep: Callable[[float], None] = time.sleep
    monotonic: Callable[[], float] = time.monotonic


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, not {text!r}")
    return value


# -- old admin.py flags -------------------------------------------------------------------------

def _legacy_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dtadmin", add_help=False,
        description="Dynamic Torque's admin.py flags, mapped onto dtadmin's subcommands.")
    action = parser.add_mutually_exclusive_group()
    action.add_argument("-i", action="store_true", help="info")
    action.add_argument("-s", action="store_true", help="toggle sleep mode")
    action.add_argument("-k", metavar="NODE", help="kill an idle node, waiting for it")
    action.add_argument("-f", action="store_true", help="drain all and wait")
    action.add_argument("-d", metavar="NODE", help="node detail")
    action.add_argument("-l", action="store_true", help="list nodes")
    action.add_argument("-w", action="store_true", help="list nodes")
    parser.add_argument("-c", metavar="S", type=_positive, help="with -i: refresh every S s")
    parser.add_argument("--json", action="store_true")
    return parser


def translate_legacy(argv: Sequence[str]) -> list[str]:
    """Rewrite `-i -c 5`, `-k NODE`, ... into subcommands; other command lines unchanged.

    Global options (--url, --token-file, --timeout, --proxy, --json) may come first either
    way."""
    head: list[str] = []
    index = 0
    while index < len(argv):
        token = argv[index]
        if token in _GLOBAL_WITH_VALUE:
            head += argv[index:index + 2]
            index += 2
        elif token == "--json" or token.startswith(tuple(f"{name}=" for name in
                                                         _GLOBAL_WITH_VALUE)):
            head.append(token)
            index += 1
        else:
            break
    rest = list(argv[index:])
    if not rest or rest[0] not in _LEGACY_FLAGS:
        return list(argv)
    parser = _legacy_parser()
    # Unknown words (--wait-timeout 60, --poll 1) go on to the subcommand, which checks them.
    old, onward = parser.parse_known_args(rest)
    if old.c is not None and not old.i:
        parser.error("-c S only goes with -i (info every S seconds)")
    if not any((old.i, old.s, old.k, old.f, old.d, old.l, old.w)):
        parser.error("one of -i -s -k -f -d -l -w is required")
    if old.i:
        new = ["info"] + (["--watch", str(old.c)] if old.c is not None else [])
    elif old.s:
        new = ["toggle-sleep"]
    elif old.k:
        new = ["kill", old.k, "--wait"]
    elif old.f:
        new = ["drain-all", "--wait"]
    elif old.d:
        new = ["node", old.d]
    else:
        new = ["nodes"]
    return head + new + (["--json"] if old.json else []) + onward


# -- the parser -----------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dtadmin",
        description="Administer dynamictorque through its HTTP API. Old admin.py flags "
                    "(-i, -i -c S, -s, -k NODE, -f, -d NODE, -l, -w) are accepted too.",
        epilog="Exit codes: 0 ok, 1 refused, 2 usage, 3 service down or reconciler not "
               "acting, 4 authentication failed, 5 not found. URL and token file: flags, "
               "then DTADMIN_URL / DTADMIN_TOKEN_FILE, then [dtadmin] url / token_file in "
               "~/.config/dtadmin.conf or /etc/dynamictorque/dtadmin.conf (DTADMIN_CONFIG "
               "names another file). Proxy variables are ignored: a proxy is used only "
               "with --proxy or proxy in dtadmin.conf.")
    parser.add_argument("--url", help="API address (default http://127.0.0.1:8080)")
    parser.add_argument("--token-file", help="file holding the admin token (mutations)")
    parser.add_argument("--timeout", type=_positive, help="HTTP timeout in seconds (10)")
    parser.add_argument("--proxy", metavar="URL",
                        help="reach the API through this HTTP proxy; http_proxy and the "
                             "other proxy variables are ignored")
    parser.add_argument("--json", dest="json_top", action="store_true",
                        help="print the API's JSON instead of tables")
    output = argparse.ArgumentParser(add_help=False)
    output.add_argument("--json", action="store_true", help="print the API's JSON")
    waiting = argparse.ArgumentParser(add_help=False)
    how_far = waiting.add_mutually_exclusive_group()
    how_far.add_argument("--wait", action="store_true",
                         help="after the reconciler's decision, follow it to the end "
                              "(the node deleted, every node gone)")
    how_far.add_argument("--no-wait", action="store_true",
                         help="return once recorded, before the reconciler decides")
    waiting.add_argument("--wait-timeout", type=_positive, metavar="S",
                         help="give up waiting after S seconds, exit 3 (the decision 60; "
                              "with --wait: kill 600, drain-all 3600, reset-pool 120)")
    waiting.add_argument("--poll", type=_positive, default=DEFAULT_POLL_SECONDS, metavar="S",
                         help="seconds between checks while waiting (1)")

    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    info = commands.add_parser("info", parents=[output], help="mode, pools, nodes, queue")
    info.add_argument("--watch", type=_positive, metavar="S",
                      help="redraw every S seconds until Ctrl-C")
    nodes = commands.add_parser("nodes", parents=[output], help="list owned nodes")
    nodes.add_argument("--all", action="store_true", help="include deleted records")
    node = commands.add_parser("node", parents=[output], help="one node in detail")
    node.add_argument("name")
    commands.add_parser("sleep", parents=[output], help="no new launches (deletions go on)")
    commands.add_parser("wake", parents=[output], help="leave sleep mode")
    commands.add_parser("toggle-sleep", parents=[output],
                        help="sleep if awake, wake if sleeping (admin.py -s)")
    kill = commands.add_parser("kill", parents=[output, waiting],
                               help="delete an idle node; refused if a job runs on it")
    kill.add_argument("name")
    commands.add_parser("drain-all", parents=[output, waiting],
                        help="offline every node, sleep, delete each when its jobs end")
    reset = commands.add_parser("reset-pool", parents=[output, waiting],
                                help="clear a pool's backoff and failure stop")
    reset.add_argument("pool")
    commands.add_parser("plan", parents=[output], help="the last plan, with reasons")
    why = commands.add_parser("why", parents=[output], help="why a job is (not) scaling")
    why.add_argument("job_id")
    intent = commands.add_parser("intent", parents=[output], help="an admin request's outcome")
    intent.add_argument("intent_id", type=int)
    return parser


# -- helpers --------------------------------------------------------------------------------

def _emit(out: TextIO, args: argparse.Namespace, body: Any, human: Callable[[], str]) -> int:
    out.write(json.dumps(body, indent=2) + "\n" if args.json else human())
    out.flush()
    return ExitCode.OK


def watch(draw: Callable[[], str], interval: float, out: TextIO,
          sleep: Callable[[float], None] = time.sleep) -> int:
    """Redraw in place every `interval` seconds, like watch(1); Ctrl-C ends it cleanly.
    A failed draw shows the error in the frame and the next one tries again."""
    try:
        while True:
            try:
                frame = draw()
            except AdminError as error:
                frame = f"dtadmin: {error.message}\n"
            out.write(f"{CLEAR_SCREEN}Every {interval:g}s: dtadmin info\n\n{frame}")
            out.flush()
            sleep(interval)
    except KeyboardInterrupt:
        out.write("\n")
        out.flush()
        return ExitCode.OK


def wait_for_intent(client: Client, intent_id: int, waiting: Waiting) -> dict[str, Any]:
    """Poll until the reconciler has decided; ServiceDown when it does not in time."""
    deadline = waiting.monotonic() + waiting.timeout
    while True:
        body = client.get(f"/v1/intents/{intent_id}")
        if body["intent"]["status"] != "pending":
            return body
        if waiting.monotonic() >= deadline:
            raise ServiceDown(f"gave up after {waiting.timeout:g} s: intent {intent_id} is "
                              "still pending; is the reconciler running? (`dtadmin info` "
                              "shows its last pass)")
        waiting.sleep(waiting.poll)


def _check_outcome(intent: dict[str, Any]) -> None:
    if intent["status"] in ("refused", "failed"):
        raise Refused(f"{intent['kind']} {intent.get('target') or ''} {intent['status']}: "
                      f"{intent['message']}".replace("  ", " "))


def _waiting(args: argparse.Namespace, wait_timeout: float) -> Waiting:
    """`wait_timeout` bounds a --wait to the end; without it only the decision is awaited."""
    default_timeout = wait_timeout if args.wait else DECISION_WAIT_SECONDS
    return Waiting(timeout=args.wait_timeout or default_timeout, poll=args.poll)


def _post_intent(client: Client, path: str, out: TextIO, args: argparse.Namespace
                 ) -> dict[str, Any]:
    intent = client.post(path)["intent"]
    if not args.json:
        # Shown at once: the decision may take a pass, and Ctrl-C leaves the intent recorded.
        out.write(render.render_intent(intent))
        out.flush()
    return intent


def _recorded(out: TextIO, args: argparse.Namespace, intent: dict[str, Any]) -> int:
    return _emit(out, args, {"intent": intent},
                 lambda: "the reconciler carries it out on its next pass; "
                         f"`dtadmin intent {intent['id']}` shows the outcome\n")


# -- commands -------------------------------------------------------------------------------

def cmd_info(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    def draw() -> str:
        status = client.get("/status")
        if args.json:
            return json.dumps(status, indent=2) + "\n"
        return render.render_info(status, client.get("/v1/nodes"), client.url)

    if args.watch is not None:
        return watch(draw, args.watch, out)
    out.write(draw())
    return ExitCode.OK


def cmd_nodes(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    body = client.get("/v1/nodes", params={"include_deleted": "true"} if args.all else None)
    return _emit(out, args, body, lambda: render.render_nodes(body))


def cmd_node(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    body = client.get(f"/v1/nodes/{path_segment(args.name)}")
    return _emit(out, args, body, lambda: render.render_node(body))


def _sleep_message(sleeping: bool) -> str:
    return ("sleep mode on: no new launches; deletions continue\n" if sleeping
            else "sleep mode off: launches allowed\n")


def cmd_sleep(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    body = client.post("/v1/sleep")
    return _emit(out, args, body, lambda: _sleep_message(body["sleeping"]))


def cmd_wake(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    body = client.post("/v1/wake")
    return _emit(out, args, body, lambda: _sleep_message(body["sleeping"]))


def cmd_toggle_sleep(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    sleeping = client.get("/status")["sleeping"]
    body = client.post("/v1/wake" if sleeping else "/v1/sleep")
    return _emit(out, args, body, lambda: _sleep_message(body["sleeping"]))


def _decided(client: Client, args: argparse.Namespace, out: TextIO, intent: dict,
             wait_timeout: float) -> tuple[dict, Waiting, float]:
    """Wait for the reconciler's decision on the intent (refusals raise); returns its
    latest answer, the waiting settings and the deadline the rest of a --wait shares."""
    waiting = _waiting(args, wait_timeout)
    deadline = waiting.monotonic() + waiting.timeout
    body = wait_for_intent(client, intent["id"], waiting)
    _check_outcome(body["intent"])
    if not args.json:
        out.write(render.render_intent(body["intent"]))
    return body, waiting, deadline


def cmd_kill(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    intent = _post_intent(client, f"/v1/nodes/{path_segment(args.name)}/kill", out, args)
    if args.no_wait:
        return _recorded(out, args, intent)
    body, waiting, deadline = _decided(client, args, out, intent, KILL_WAIT_SECONDS)
    if not args.wait:
        return _emit(out, args, body,
                     lambda: f"`dtadmin node {args.name}` follows its deletion\n")
    shown = None
    while body.get("target_state") not in ("deleted", None):
        if body["target_state"] != shown and not args.json:
            shown = body["target_state"]
            out.write(f"{args.name}: {shown}, waiting for its deletion\n")
            out.flush()
        if waiting.monotonic() >= deadline:
            raise ServiceDown(f"gave up after {waiting.timeout:g} s: {args.name} is still "
                              f"{body['target_state']}")
        waiting.sleep(waiting.poll)
        body = client.get(f"/v1/intents/{intent['id']}")
    return _emit(out, args, body, lambda: f"{args.name} deleted\n")


def cmd_drain_all(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    intent = _post_intent(client, "/v1/drain-all", out, args)
    if args.no_wait:
        return _recorded(out, args, intent)
    body, waiting, deadline = _decided(client, args, out, intent, DRAIN_WAIT_SECONDS)
    if not args.wait:
        return _emit(out, args, body, lambda: "`dtadmin nodes` follows them\n")
    shown = None
    while True:
        nodes = client.get("/v1/nodes")["nodes"]
        if not nodes:
            break
        left = render.counts(dict(sorted(Counter(node["state"] for node in nodes).items())))
        if left != shown and not args.json:
            shown = left
            out.write(f"waiting for {len(nodes)} nodes: {left}\n")
            out.flush()
        if waiting.monotonic() >= deadline:
            raise ServiceDown(f"gave up after {waiting.timeout:g} s: {len(nodes)} nodes left "
                              f"({left}); jobs may still be running on them")
        waiting.sleep(waiting.poll)
    return _emit(out, args, body, lambda: "all nodes drained and deleted; sleep mode is on "
                                          "(`dtadmin wake` allows launches again)\n")


def cmd_reset_pool(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    intent = _post_intent(client, f"/v1/pools/{path_segment(args.pool)}/reset", out, args)
    if args.no_wait:
        return _recorded(out, args, intent)
    # The decision is the whole of a reset: --wait only changes the default timeout.
    body, _, _ = _decided(client, args, out, intent, RESET_WAIT_SECONDS)
    return _emit(out, args, body, lambda: "")


def cmd_plan(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    body = client.get("/v1/plan")
    return _emit(out, args, body, lambda: render.render_plan(body))


def cmd_why(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    body = client.get(f"/v1/jobs/{path_segment(args.job_id)}/why")
    return _emit(out, args, body, lambda: render.render_why(body))


def cmd_intent(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    body = client.get(f"/v1/intents/{args.intent_id}")
    return _emit(out, args, body, lambda: render.render_intent(body["intent"]))


COMMANDS: dict[str, Callable[[Client, argparse.Namespace, TextIO], int]] = {
    "info": cmd_info,
    "nodes": cmd_nodes,
    "node": cmd_node,
    "sleep": cmd_sleep,
    "wake": cmd_wake,
    "toggle-sleep": cmd_toggle_sleep,
    "kill": cmd_kill,
    "drain-all": cmd_drain_all,
    "reset-pool": cmd_reset_pool,
    "plan": cmd_plan,
    "why": cmd_why,
    "intent": cmd_intent,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the exit code (see the module docstring)."""
    words = list(sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser().parse_args(translate_legacy(words))
    except SystemExit as stop:
        # argparse has printed the usage or the help already.
        return stop.code if isinstance(stop.code, int) else ExitCode.USAGE
    args.json = args.json or args.json_top
    try:
        client = Client(load_connection(url=args.url, token_file=args.token_file,
                                        timeout=args.timeout, proxy=args.proxy))
        return int(COMMANDS[args.command](client, args, sys.stdout))
    except AdminError as error:
        print(f"dtadmin: {error.message}", file=sys.stderr)
        return int(error.exit_code)
    except KeyboardInterrupt:
        print("dtadmin: interrupted; a recorded request stays recorded", file=sys.stderr)
        return 130
