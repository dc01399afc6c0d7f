"""redact: secrets masked and control characters escaped before anything reaches a log or
check-config's output."""
from __future__ import annotations

import io
import logging

import pytest

from dtserver.redact import MASK, EscapingFormatter, mask_argv, mask_text, printable


@pytest.mark.parametrize("text, shown", [
    ("https://user:secret@keystone/", f"https://user:{MASK}@keystone/"),
    ("https://keystone.example.org:5000/v3", "https://keystone.example.org:5000/v3"),
    ("https://user@keystone/", "https://user@keystone/"),
    ("http://hook/notify?token=abc123&node=n1", f"http://hook/notify?token={MASK}&node=n1"),
    ("password=hunter2", f"password={MASK}"),
    ("--client-secret=s3", f"--client-secret={MASK}"),
    ("API_KEY=k1;x=1", f"API_KEY={MASK};x=1"),
    ("Authorization: Bearer abc.def", f"Authorization: Bearer {MASK}"),
    ("node=n1 reason=idle", "node=n1 reason=idle"),
], ids=["userinfo", "no-userinfo", "user-only", "query", "password", "flag-equals",
        "key", "bearer", "nothing"])
def test_mask_text_hides_the_value_of_each_secret_form(text: str, shown: str) -> None:
    assert mask_text(text) == shown


def test_mask_argv_hides_the_argument_after_a_secret_flag_and_secrets_inside_arguments():
    argv = ("notify", "--token", "abc123", "--password", "pw", "--secret", "s", "--api-key",
            "k", "--node", "{0}", "https://u:pw@hook/x?token=t", "--token")
    assert mask_argv(argv) == (
        "notify", "--token", MASK, "--password", MASK, "--secret", MASK, "--api-key", MASK,
        "--node", "{0}", f"https://u:{MASK}@hook/x?token={MASK}", "--token")


@pytest.mark.parametrize("raw, shown", [
    ("a\nb", "a\\nb"), ("a\rb", "a\\rb"), ("a\tb", "a\\tb"), ("\x01\x1b[31m", "\\x01\\x1b[31m"),
    ("\x7f\x85", "\\x7f\\x85"), ("a\u2028b", "a\\u2028b"), ("\u202eevil", "\\u202eevil"),
    ("caf\u00e9 /v1/nodes", "caf\u00e9 /v1/nodes"), ("bad\udcffbyte", "bad\\udcffbyte"),
])
def test_printable_escapes_control_characters_only(raw: str, shown: str) -> None:
    assert printable(raw) == shown


def test_the_formatter_writes_one_line_per_record_whatever_the_arguments_hold():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(EscapingFormatter("%(levelname)s %(message)s"))
    logger = logging.getLogger("tests.redact.formatter")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("auth refused path=%s", "/v1/x\nWARNING forged line")
    finally:
        logger.removeHandler(handler)

    assert stream.getvalue() == "WARNING auth refused path=/v1/x\\nWARNING forged line\n"


def test_the_formatter_masks_a_password_in_any_logged_url_and_nothing_else():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(EscapingFormatter("%(message)s"))
    logger = logging.getLogger("tests.redact.urls")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.error("cloud unreachable url=%s token=%s",
                     "https://scaler:pw@keystone/v3/auth/tokens", "missing")
    finally:
        logger.removeHandler(handler)

    assert stream.getvalue() == (
        f"cloud unreachable url=https://scaler:{MASK}@keystone/v3/auth/tokens token=missing\n")
