"""qsub on the emulated server: its option grammar (glibc getopt over TORQUE's
GETOPT_ARGS) and its reading of `#PBS` directives, both held to tests/qsub_grammar.py like
the submit filter; the checks of a script file it makes before anything else; and the
submission itself.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Iterator, Sequence

from dtserver import nodespec
from dtserver.fakes.torque.render import unsupported
from dtserver.fakes.torque.scheduler import Scheduler, normalize_resource
from dtserver.fakes.torque.state import (
    DEFAULT_RUNTIME, EmulatorError, RUNTIME_VARIABLE, Submission)

# print_qsub_usage_exit() prints "[problem]\n\n", this and one more newline (20_).
QSUB_USAGE = """
usage: qsub [-a date_time] [-A account_string] [-b secs]
    [-c [ none | { enabled | periodic | shutdown |
    depth=<int> | dir=<path> | interval=<minutes>}... ]
    [-C directive_prefix] [-d path] [-D path]
    [-e path] [-h] [-I] [-j oe|eo|n] [-k {oe}] [-K <kill delay seconds>] 
    [-l resource_list] [-m n|{abe}] [-M user_list] [-N jobname] [-o path] 
    [-p priority] [-P proxy_user [-J <jobid]] [-q queue] [-r y|n] 
    [-S path] [-t number_to_submit] [-T type]  [-u user_list] [-w] path
    [-W additional_attributes] [-v variable_list] [-V ] [-x] [-X] [-z] [script]
"""
# qsub's own GETOPT_ARGS: its getopt() reads the options by it, and
# find_job_script_index() looks up `-X` as "X:" in it.
_QSUB_GETOPT_ARGS = "a:A:b:c:C:d:D:e:EfF:hi:Ij:J:k:K:l:L:m:M:nN:o:p:P:q:r:S:t:T:u:v:Vw:W:Xxz-:"
_SCRIPT_NOT_ASCII = "qsub:  file must be an ascii script\n"        # 50_
_SCRIPT_IN_DOS_FORMAT = "qsub:  script is written in DOS/Windows text format\n"
_ASCII_CHECKED_BYTES = 50    # istext() reads MMAX_VERIFY_BYTES
_LINE_BUFFER = 2048          # isWindowsFormat() reads lines with fgets into MAXBUF
_SPACE = " \t\n\v\f\r"              # C isspace() in the C locale, as qsub uses it
# What istext() takes for text in the C locale (qsub never calls setlocale): isprint or isspace.
_TEXT_BYTES = frozenset(range(0x20, 0x7f)) | frozenset(b" \t\n\v\f\r")


class QsubUsageError(ValueError):
    """qsub prints its usage and submits nothing."""


def parse_qsub_options(args: Sequence[str]) -> tuple[list[tuple[str, str]], list[str]]:
    """qsub's options, as (letter, value) pairs, and its operands, read as glibc getopt()
    reads them with GETOPT_ARGS: options may follow the script name (getopt permutes),
    flags group, a value is attached or the next word, `--` ends the options, and a
    `--word` is the `-` option qsub refuses. tests/qsub_grammar.py holds the cases the
    submit filter is held to as well. Raises QsubUsageError where qsub prints its usage."""
    options: list[tuple[str, str]] = []
    operands: list[str] = []
    index = 0
    while index < len(args):
        arg = args[index]
        index += 1
        if arg == "--":
            operands.extend(args[index:])
            break
        if not arg.startswith("-") or arg == "-":
            operands.append(arg)
            continue
        position = 1
        while position < len(arg):
            letter = arg[position]
            position += 1
            spec = _QSUB_GETOPT_ARGS.find(letter)
            if letter == ":" or spec < 0:
                raise QsubUsageError(f"invalid option -- '{letter}'")
            if _QSUB_GETOPT_ARGS[spec + 1:spec + 2] != ":":
                options.append((letter, ""))
                continue
            if position < len(arg):
                value = arg[position:]
            elif index < len(args):
                value = args[index]
                index += 1
            else:
                raise QsubUsageError(f"option requires an argument -- '{letter}'")
            if letter == "-":
                raise QsubUsageError("a single - is not a valid option")
            options.append((letter, value))
            break
    return options, operands


def script_file_refusal(args: Sequence[str]) -> str | None:
    """What qsub prints when it refuses the script file its arguments name, before it
    parses its options or runs a submit filter; None when it takes the file (or there is
    none, or it cannot be read: qsub words that later). A script on stdin is not checked.

    get_script() first wants the first 50 bytes to be text (istext), then no line that
    ends in CR LF (isWindowsFormat)."""
    operand = _script_operand(args)
    if operand is None:
        return None
    try:
        script = Path(operand).read_bytes()
    except OSError:
        return None
    if not set(script[:_ASCII_CHECKED_BYTES]) <= _TEXT_BYTES:
        return _SCRIPT_NOT_ASCII
    if any(_is_dos_line(line) for line in _fgets_lines(script, _LINE_BUFFER)):
        return _SCRIPT_IN_DOS_FORMAT
    return None


def _script_operand(args: Sequence[str]) -> str | None:
    """find_job_script_index(): the first word that is neither an option nor the value
    of the option before it (a two-character option whose letter takes one)."""
    takes_value = False
    for word in args:
        if takes_value:
            takes_value = False
        elif not word.startswith("-"):
            return word
        elif word[1:2] != "I" and f"{word[1:2]}:" in _QSUB_GETOPT_ARGS:
            takes_value = len(word) <= 2
    return None


def _fgets_lines(data: bytes, size: int) -> Iterator[bytes]:
    """`data` as fgets() with a buffer of `size` reads it: up to a newline or size-1 bytes."""
    start = 0
    while start < len(data):
        newline = data.find(b"\n", start, start + size - 1)
        end = newline + 1 if newline >= 0 else min(start + size - 1, len(data))
        yield data[start:end]
        start = end


def _is_dos_line(line: bytes) -> bool:
    """isWindowsFormat()'s test: the byte before the last (as strlen counts) is a CR."""
    text = line.partition(b"\0")[0]
    return len(text) >= 2 and text[-2:-1] == b"\r"


def check_job_name(name: str) -> str | None:
    if not name or any(character.isspace() for character in name):
        return f"[qsub: illegal -N value]\n{QSUB_USAGE}\n"
    return None


def check_array(text: str) -> str | None:
    try:
        nodespec.parse_array_spec(text)
    except nodespec.RequestError:
        return f"[qsub: illegal -t value]\n{QSUB_USAGE}\n"
    return None


def read_directives(script: str, prefix: str) -> list[tuple[str, str]]:
    """The options of a job script's directives, in order, as qsub's get_script() reads
    them: only the leading block counts (blank lines, comments, `#!` and `:` lines keep
    it going), a trailing backslash continues a directive, and an empty prefix (`-C ''`)
    turns directives off. Raises QsubUsageError where qsub refuses the script."""
    options: list[tuple[str, str]] = []
    if not prefix:
        return options
    rows = script.split("\n")
    if rows[-1] == "":
        rows.pop()                        # the text after the last newline, if any
    index = 0
    while index < len(rows):
        line = rows[index].removesuffix("\r")   # qsub turns CRLF into LF before looking
        index += 1
        if line.lstrip(_SPACE).startswith(prefix):
            while line.endswith("\\"):
                if index >= len(rows):
                    raise QsubUsageError("a directive continues past the end of the script")
                line = line[:-1] + rows[index].removesuffix("\r")
                index += 1
            found, _ = parse_qsub_options(_directive_words(line.lstrip(_SPACE)[len(prefix):]))
            options.extend(found)
        elif _is_command(line):
            break
    return options


def _directive_words(text: str) -> list[str]:
    """make_argv(): white space separates words; quotes group words and, unlike a shell,
    stay in the word; a backslash keeps the next character as it is."""
    words: list[str] = []
    word: list[str] = []
    in_word = False
    position = 0
    while position < len(text):
        character = text[position]
        if character in "\"'":
            end = text.find(character, position + 1)
            if end < 0:
                raise QsubUsageError(f"unmatched {character} in a directive")
            word.append(text[position:end + 1])
            position = end + 1
            in_word = True
        elif character == "\\":
            word.append(text[position + 1:position + 2])
            position += 2
            in_word = True
        elif character in _SPACE:
            if in_word:
                words.append("".join(word))
                word.clear()
                in_word = False
            position += 1
        else:
            word.append(character)
            position += 1
            in_word = True
    if in_word:
        words.append("".join(word))
    return words


def _is_command(line: str) -> bool:
    """isexecutable(): the first line that is not blank, a comment, `#!` or `:` ends the
    directive block."""
    if line.startswith((":", "#!")):
        return False
    rest = line.lstrip(_SPACE)
    return rest != "" and not rest.startswith("#")


class QsubCommand(Scheduler):
    """The qsub command."""

    def _qsub(self, args: list[str], stdin: bytes | None,
              submit_filter: str | None = None) -> tuple[int, str, str]:
        # With a filter, qsub checked the script file before running the filter.
        refusal = None if submit_filter is not None else script_file_refusal(args)
        if refusal is not None:
            return 1, "", refusal
        try:
            options, rest = parse_qsub_options(args)
        except QsubUsageError:
            return 2, "", QSUB_USAGE.lstrip("\n")
        if any(option == "I" for option, _ in options):
            return unsupported("qsub -I")
        if len(rest) > 1:
            return 2, "", QSUB_USAGE.lstrip("\n")
        if submit_filter is not None:
            # The filter read the script file (or stdin); its output is the job script.
            script = stdin or b""
            default_name = Path(rest[0]).name if rest else "STDIN"
        elif rest:
            path = Path(rest[0])
            try:
                script = path.read_bytes()
            except OSError as error:
                return 1, "", (f"qsub: script file '{rest[0]}' cannot be loaded - "
                               f"{error.strerror}\n")
            default_name = path.name
        else:
            script = stdin or b""
            default_name = "STDIN"
        prefix = next((value for option, value in options if option == "C"), "#PBS")
        try:
            directives = read_directives(script.decode(errors="replace"), prefix)
        except (QsubUsageError, ValueError):
            return 2, "", QSUB_USAGE.lstrip("\n")
        merged = directives + options
        values: dict[str, str] = {}
        limits: list[str] = []
        variables: list[str] = []
        for option, value in merged:
            if option == "l":
                limits.append(value)
            elif option == "v":
                # The server splits the list at a newline too: `X=a\nb` shows `X=a,b` (51_).
                variables.extend(item for item in re.split("[,\n]", value) if item)
            else:
                values[option] = value
        name = values.get("N", default_name)
        problem = check_job_name(name) if "N" in values else None
        if problem is None and "t" in values:
            problem = check_array(values["t"])
        if problem is not None:
            return 2, "", problem
        try:
            resources = {key: normalize_resource(key, value) for key, value
                         in nodespec.parse_qsub_resources(limits).items()}
        except nodespec.RequestError:
            return 2, "", f"[qsub: illegal -l value]\n{QSUB_USAGE}\n"
        runtime = DEFAULT_RUNTIME
        for variable in variables:
            key, _, text = variable.partition("=")
            if key == RUNTIME_VARIABLE:
                try:
                    runtime = float(text)
                except ValueError:
                    return 2, "", f"qsub: {RUNTIME_VARIABLE} must be seconds, got {text!r}\n"
        submission = Submission(
            owner=self._submit_user, queue=values.get("q"), resources=resources,
            name=name, account=values.get("A"), array=values.get("t"), runtime=runtime,
            hold="h" in values, submit_args=" ".join(args), variables=tuple(variables),
            submit_filter=submit_filter)
        if not script:
            # qsub prints an id for an empty script but the job is never committed (README).
            seq = self._state.next_job_number
            self._state.next_job_number += 1
            suffix = "[]" if submission.array else ""
            return 0, f"{seq}{suffix}.{self._server}\n", ""
        try:
            job_id = self._submit(submission)
        except EmulatorError as error:
            return error.status, "", error.stderr
        return 0, f"{job_id}\n", ""
