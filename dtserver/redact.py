"""What never reaches a log or check-config's output as it came: secrets and control characters.

Secrets are masked by one small rule (docs/operations.md, Configure):
- the password of a URL's userinfo: `https://user:PASSWORD@host`;
- the value of a `NAME=VALUE` inside any text (a query string, an `--opt=value` argument),
  where NAME ends in token, password, passwd, secret or key, case ignored;
- the credential after `Bearer` or `Basic` (an Authorization header in a curl command);
- in an argument list, the argument after a flag named like that (`--token VALUE`).
It errs on the side of masking: `--sort-key=x` loses its x too.

Control characters (C0, DEL, C1, line and paragraph separators, bidi overrides) and lone
surrogates are written as escapes (\\n, \\x1b, \\u2028), so a value that came from a
request can never start a log line of its own. EscapingFormatter applies that to every
message the services log, and masks URL passwords there too, whoever logged the URL (an
error from the cloud client quoting its endpoint, say).
"""
from __future__ import annotations

import logging
import re
from typing import Sequence

MASK = "****"

_SECRET_NAME = r"[A-Za-z0-9_.-]*(?:token|password|passwd|secret|key)"
_USERINFO = re.compile(r"(?P<keep>\b[A-Za-z][A-Za-z0-9+.-]*://[^/@:\s]*:)[^/@\s]*(?=@)")
_ASSIGNMENT = re.compile(rf"(?i)(?P<keep>{_SECRET_NAME}=)[^&;,\s]+")
_CREDENTIAL = re.compile(r"(?i)(?P<keep>\b(?:bearer|basic)\s+)[^\s'\"]+")
_SECRET_FLAG = re.compile(rf"(?i)-{{1,2}}{_SECRET_NAME}")

_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069"
                      "\ud800-\udfff]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def mask_text(text: str) -> str:
    """`text` with every secret the rule knows replaced by MASK."""
    for pattern in (_USERINFO, _ASSIGNMENT, _CREDENTIAL):
        text = _mask(pattern, text)
    return text


def mask_url_passwords(text: str) -> str:
    """`text` with the password of every `scheme://user:password@` in it masked."""
    return _mask(_USERINFO, text)


def _mask(pattern: re.Pattern[str], text: str) -> str:
    return pattern.sub(lambda match: match["keep"] + MASK, text)


def mask_argv(argv: Sequence[str]) -> tuple[str, ...]:
    """An argument list with its secrets masked: inside each argument, and the argument
    that follows a secret flag (`--token VALUE`)."""
    masked: list[str] = []
    after_flag = False
    for argument in argv:
        masked.append(MASK if after_flag else mask_text(argument))
        after_flag = _SECRET_FLAG.fullmatch(argument) is not None
    return tuple(masked)


def printable(text: str) -> str:
    """`text` with control characters escaped: always one line."""
    return _CONTROL.sub(_escape, text)


def _escape(match: re.Match[str]) -> str:
    character = match[0]
    if character in _NAMED:
        return _NAMED[character]
    code = ord(character)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


class EscapingFormatter(logging.Formatter):
    """A Formatter whose messages are always one line, whatever their arguments held, and
    never show a URL's password. The rest of the rule stays with the callers (mask_argv,
    mask_text): on every message it would also hide our own `token=missing` and ids
    logged as `..._key=`.

    Only the message is escaped: a traceback appended by log.exception keeps its lines.
    """

    def format(self, record: logging.LogRecord) -> str:
        # A copy: other handlers of the same record see it unchanged.
        escaped = logging.makeLogRecord(record.__dict__)
        escaped.msg = printable(mask_url_passwords(record.getMessage()))
        escaped.args = None
        return super().format(escaped)
