"""qsub's option grammar as cases: what TORQUE 6.1's qsub reads from its argv.

qsub parses its options with glibc getopt() and GETOPT_ARGS (qsub_functions.c), so options
may follow the script name (getopt permutes), flags group (`-hz`), a value may be attached
(`-lnodes=2`) or be the next word whatever it looks like (`-N -x`), `--` ends the options,
and a letter GETOPT_ARGS lacks, a missing value or any `--word` is a usage error.

The job script's directives follow the same grammar once qsub has split them into words
(DIRECTIVE_CASES).

The submit filter (hooks/torque_submitfilter) must stay a standalone stdlib script, so it
cannot share the emulator's parser; both are checked against these cases instead
(tests/unit/test_qsub_grammar.py). Each case of CASES is (argv, (options, operands)) with
options as (letter, value) pairs, or (argv, USAGE).
"""
from __future__ import annotations

USAGE = "usage"

Options = list[tuple[str, str]]

CASES: tuple[tuple[list[str], tuple[Options, list[str]] | str], ...] = (
    # The script name may come first: getopt permutes, so the options after it count.
    (["job.sh", "-q", "batch"], ([("q", "batch")], ["job.sh"])),
    (["-q", "batch", "job.sh"], ([("q", "batch")], ["job.sh"])),
    (["-l", "nodes=1", "job.sh", "-l", "walltime=1:00:00"],
     ([("l", "nodes=1"), ("l", "walltime=1:00:00")], ["job.sh"])),
    # Values attached or in the next word; -l repeats and keeps its order.
    (["-lnodes=2", "-l", "mem=1gb"], ([("l", "nodes=2"), ("l", "mem=1gb")], [])),
    (["-W", "x=NACCESSPOLICY:SINGLEJOB", "job.sh"],
     ([("W", "x=NACCESSPOLICY:SINGLEJOB")], ["job.sh"])),
    (["-Wdepend=afterok:17", "job.sh"], ([("W", "depend=afterok:17")], ["job.sh"])),
    (["-v", "A=1,B=2", "job.sh"], ([("v", "A=1,B=2")], ["job.sh"])),
    (["-C", "#FOO", "job.sh"], ([("C", "#FOO")], ["job.sh"])),
    # The next word is the value even when it looks like an option.
    (["-I", "-N", "-x"], ([("I", ""), ("N", "-x")], [])),
    # Flags group, and the last of a group may take the rest as its value.
    (["-hz", "job.sh"], ([("h", ""), ("z", "")], ["job.sh"])),
    (["-hqbatch", "job.sh"], ([("h", ""), ("q", "batch")], ["job.sh"])),
    # Every letter of GETOPT_ARGS, flags and options with values alike.
    (["-E", "-f", "-n", "-V", "-X", "-x", "job.sh"],
     ([("E", ""), ("f", ""), ("n", ""), ("V", ""), ("X", ""), ("x", "")], ["job.sh"])),
    (["-K", "30", "-L", "tasks=2:lprocs=4", "-i", "img", "job.sh"],
     ([("K", "30"), ("L", "tasks=2:lprocs=4"), ("i", "img")], ["job.sh"])),
    (["-a", "1200", "-A", "acct", "-b", "10", "-c", "none", "-d", "/tmp", "-D", "/", "-e",
      "err", "-F", "x", "-j", "oe", "-J", "1", "-k", "oe", "-m", "n", "-M", "u", "-o", "out",
      "-p", "1", "-P", "bob", "-r", "y", "-S", "/bin/sh", "-t", "1-3", "-T", "t", "-u", "u",
      "-w", "/tmp"],
     ([("a", "1200"), ("A", "acct"), ("b", "10"), ("c", "none"), ("d", "/tmp"), ("D", "/"),
       ("e", "err"), ("F", "x"), ("j", "oe"), ("J", "1"), ("k", "oe"), ("m", "n"),
       ("M", "u"), ("o", "out"), ("p", "1"), ("P", "bob"), ("r", "y"), ("S", "/bin/sh"),
       ("t", "1-3"), ("T", "t"), ("u", "u"), ("w", "/tmp")], [])),
    # `--` ends the options; what follows is operands, options or not.
    (["--", "-q", "x"], ([], ["-q", "x"])),
    (["-q", "batch", "--", "job.sh", "-h"], ([("q", "batch")], ["job.sh", "-h"])),
    # A lone `-` is an operand (the script on stdin); qsub itself refuses a second operand.
    (["-"], ([], ["-"])),
    (["job.sh", "other.sh"], ([], ["job.sh", "other.sh"])),
    ([], ([], [])),
    # Usage errors: an unknown letter, a missing value, a long option.
    (["-Z"], USAGE),
    (["-y", "job.sh"], USAGE),
    (["job.sh", "-Z"], USAGE),
    (["-q"], USAGE),
    (["job.sh", "-l"], USAGE),
    (["--version"], USAGE),
    (["--queue=batch", "job.sh"], USAGE),
)

# The job script's leading directive block, as qsub's get_script() reads it, and its words
# as make_argv() splits them. Each case is (script, directive prefix, options or USAGE).
DIRECTIVE_CASES: tuple[tuple[bytes, str, Options | str], ...] = (
    # Only the leading block counts; options in it permute like the command line's.
    (b"#!/bin/sh\n#PBS -N job\n#PBS -l nodes=2\nhostname\n#PBS -q late\n", "#PBS",
     [("N", "job"), ("l", "nodes=2")]),
    (b"#PBS job.sh -q batch\n", "#PBS", [("q", "batch")]),
    # Blank lines, comments, `#!` and `:` lines keep the block going; indentation is fine.
    (b"#!/bin/sh\n\n: a no-op\n# a comment\n  #PBS -A acct\necho\n", "#PBS", [("A", "acct")]),
    # Quotes group words and stay in them; a backslash keeps the next character.
    (b'#PBS -N "my job"\n', "#PBS", [("N", '"my job"')]),
    (b"#PBS -A a\\ b\n", "#PBS", [("A", "a b")]),
    # A trailing backslash continues the directive on the next line.
    (b"#PBS -l nodes=1 \\\n  -q batch\necho\n", "#PBS", [("l", "nodes=1"), ("q", "batch")]),
    # CR LF line ends (a script on stdin) read as LF.
    (b"#PBS -q batch\r\necho\r\n", "#PBS", [("q", "batch")]),
    # -C names another prefix; an empty one turns directives off.
    (b"#PBS -q a\n#FOO -q b\n", "#FOO", [("q", "b")]),
    (b"#PBS -q a\n", "", []),
    # What qsub refuses.
    (b"#PBS -Z\n", "#PBS", USAGE),
    (b'#PBS -N "unterminated\n', "#PBS", USAGE),
    (b"#PBS -l nodes=1 \\\n", "#PBS", USAGE),
)
