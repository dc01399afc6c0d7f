"""The filter's pure pieces, loaded from its file: JSON, URLs, settings, directive words
(its qsub options are checked in tests/unit/test_qsub_grammar.py, with the emulator's).

Everything observable from outside is tested through a subprocess in
test_torque_submitfilter.py; these cover what a subprocess cannot show (the text of a
config error goes to syslog) or would need thousands of runs to cover.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.hooks.support import load_filter



submitfilter = load_filter()

HINT_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)


@settings(max_examples=200)
@given(st.dictionaries(HINT_TEXT, st.one_of(HINT_TEXT, st.lists(HINT_TEXT, max_size=4)),
                       max_size=6))
def test_to_json_is_read_back_as_the_same_value(hint: dict[str, object]) -> None:
    assert json.loads(submitfilter.to_json(hint).encode("utf-8")) == hint


@pytest.mark.parametrize("url, parts", [
    ("http://127.0.0.1:8080", (False, "127.0.0.1", "127.0.0.1:8080", 8080, "")),
    ("http://dt.example.org", (False, "dt.example.org", "dt.example.org", 80, "")),
    ("https://dt.example.org/api", (True, "dt.example.org", "dt.example.org", 443, "/api")),
    ("http://[::1]:8080/x/y", (False, "::1", "[::1]:8080", 8080, "/x/y")),
])
def test_split_url_finds_host_port_and_path_prefix(url: str, parts: tuple[object, ...]) -> None:
    assert submitfilter.split_url(url) == parts


@pytest.mark.parametrize("text, problem", [
    ("colour = blue", "filter.conf:2: unknown key 'colour'"),
    ("url", "filter.conf:2: expected key = value"),
    ("url = ftp://x", "filter.conf:2: url must start with http:// or https://"),
    ("timeout_seconds = 0", "filter.conf:2: timeout_seconds must be above 0 and at most 0.8"),
    ("timeout_seconds = nan", "filter.conf:2: timeout_seconds must be above 0"),
    ("warn_on_stderr = maybe", "filter.conf:2: warn_on_stderr must be yes or no"),
])
def test_config_errors_name_the_file_the_line_and_the_problem(tmp_path: Path, text: str,
                                                             problem: str) -> None:
    path = tmp_path / "filter.conf"
    path.write_text(f"# dynamictorque\n{text}\n", encoding="utf-8")

    with pytest.raises(submitfilter.ConfigError, match=problem):
        submitfilter.read_settings(str(path), required=True)


def test_settings_are_read_with_defaults_for_what_is_absent(tmp_path: Path) -> None:
    path = tmp_path / "filter.conf"
    path.write_text("url = http://10.0.0.5:8080/\n  # indented comment\n\n"
                    "timeout_seconds = 0.25\nwarn_on_stderr = Yes\n", encoding="utf-8")

    read = submitfilter.read_settings(str(path), required=True)

    assert (read.url, read.timeout_seconds, read.warn_on_stderr) == (
        "http://10.0.0.5:8080", 0.25, True)
    assert (read.token_file, read.log_file) == (None, None)


def test_a_missing_default_config_means_the_defaults(tmp_path: Path) -> None:
    read = submitfilter.read_settings(str(tmp_path / "absent.conf"), required=False)

    assert (read.url, read.timeout_seconds) == ("http://127.0.0.1:8080", 0.5)


@pytest.mark.parametrize("text, words", [
    (b" -l nodes=1   -N job", [b"-l", b"nodes=1", b"-N", b"job"]),
    (b' -N "my job"', [b"-N", b'"my job"']),
    (b" -N 'it''s'", [b"-N", b"'it''s'"]),
    (b" -A a\\ b", [b"-A", b"a b"]),
    (b"\t-l\tmem=1gb\r", [b"-l", b"mem=1gb"]),
    (b"", []),
])
def test_directive_words_split_as_qsub_make_argv(text: bytes, words: list[bytes]) -> None:
    assert submitfilter.split_directive(text) == words
