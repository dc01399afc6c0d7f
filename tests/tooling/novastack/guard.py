"""Run a harness process that dies with the test session: `guard.py PARENT_PID PROGRAM ARGS...`.

The parent-death signal survives exec, so when the pytest process that started the
harness dies without its teardown (killed, crashed), the kernel sends SIGTERM to the
process exec'd here and no Nova is left behind. Stdlib only: it runs in the harness venv.
"""
import ctypes
import os
import signal
import sys

_PR_SET_PDEATHSIG = 1


def main() -> None:
    parent, program = int(sys.argv[1]), sys.argv[2]
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent:      # the parent died before the signal was armed
        sys.exit(1)
    os.execv(program, sys.argv[2:])


if __name__ == "__main__":
    main()
