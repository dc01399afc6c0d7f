"""The submit filter and the TORQUE emulator read qsub's argv the same way, as qsub does.

The filter is a standalone script (hooks/README.md), so the two parsers cannot be one
function; tests/qsub_grammar.py is the one grammar both are held to.
"""
from __future__ import annotations

from typing import Callable

import pytest

from dtserver.fakes.torque.qsub import QsubUsageError, parse_qsub_options, read_directives
from tests.hooks.support import load_filter
from tests.qsub_grammar import CASES, DIRECTIVE_CASES, USAGE

Parsed = tuple[list[tuple[str, str]], list[str]]



_FILTER = load_filter()


def _filter(args: list[str]) -> Parsed | str:
    try:
        return _FILTER.parse_options(args)
    except _FILTER.UsageError:
        return USAGE


def _emulator(args: list[str]) -> Parsed | str:
    try:
        return parse_qsub_options(args)
    except QsubUsageError:
        return USAGE


PARSERS: dict[str, Callable[[list[str]], Parsed | str]] = {
    "submit filter": _filter, "emulator": _emulator}


@pytest.mark.parametrize("parser", PARSERS)
@pytest.mark.parametrize("args, expected", CASES, ids=[" ".join(args) or "(none)"
                                                        for args, _ in CASES])
def test_qsub_argv_is_read_as_qsub_reads_it(parser: str, args: list[str],
                                             expected: Parsed | str) -> None:
    assert PARSERS[parser](list(args)) == expected


def _filter_directives(script: bytes, prefix: str) -> list[tuple[str, str]] | str:
    try:
        return _FILTER.read_directives(script, prefix.encode())[1]
    except _FILTER.UsageError:
        return USAGE


def _emulator_directives(script: bytes, prefix: str) -> list[tuple[str, str]] | str:
    try:
        return read_directives(script.decode(), prefix)
    except QsubUsageError:
        return USAGE


DIRECTIVE_READERS: dict[str, Callable[[bytes, str], list[tuple[str, str]] | str]] = {
    "submit filter": _filter_directives, "emulator": _emulator_directives}


@pytest.mark.parametrize("reader", DIRECTIVE_READERS)
@pytest.mark.parametrize("script, prefix, expected", DIRECTIVE_CASES,
                         ids=[repr(script[:40]) for script, _, _ in DIRECTIVE_CASES])
def test_script_directives_are_read_as_qsub_reads_them(
        reader: str, script: bytes, prefix: str, expected: list[tuple[str, str]] | str) -> None:
    assert DIRECTIVE_READERS[reader](script, prefix) == expected
