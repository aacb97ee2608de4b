"""User mistakes (bad data, bad params) versus bugs.

A :class:`UserError` is reported as one message on stderr with a non-zero exit;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

EXIT_USER_ERROR = 2
PR_SET_PDEATHSIG = 1  # linux/prctl.h


class UserError(ValueError):
    """Invalid input from the user: the message names the file, column, rows or param."""


class Terminated(SystemExit):
    """SIGTERM, raised in the main thread so that cleanup (``finally``) runs before the exit."""


# The signal that stopped this process, once one did: a library that the handler's exception
# interrupts inside native code (polars does) may re-raise it as an error of its own.
_received: list[int] = []


def _terminate(signum: int, frame: Any) -> None:
    _received.append(signum)
    print(f"error: stopped by signal {signal.Signals(signum).name}; temporary files removed", file=sys.stderr)
    raise Terminated(128 + signum)


SHELLS = frozenset({"sh", "dash", "bash", "zsh", "fish", "ksh"})


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks (field 22 of /proc/PID/stat), or None when it has
    exited (gone, or a zombie that its own parent has not reaped yet)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return None if fields[0] in ("Z", "X") else fields[19]


def _shell_launcher(ppid: int) -> int | None:
    """The grandparent when the parent is ``sh -c CMD`` that did not exec CMD (dash, which DVC uses
    when SHELL is unset, keeps itself between DVC and the stage); else None."""
    try:
        argv = Path(f"/proc/{ppid}/cmdline").read_bytes().split(b"\0")
        status = Path(f"/proc/{ppid}/status").read_text()
    except OSError:
        return None
    if Path(argv[0].decode(errors="replace")).name not in SHELLS or b"-c" not in argv:
        return None
    ppid_line = next((line for line in status.splitlines() if line.startswith("PPid:")), "")
    return int(ppid_line.split()[1]) if ppid_line else None


def _watch(pid: int, started: str) -> None:
    while _start_time(pid) == started:
        time.sleep(0.5)
    os.kill(os.getpid(), signal.SIGTERM)


def _terminate_with_parent() -> None:
    """Ask Linux for SIGTERM when the parent dies: DVC killed mid-stage does not forward signals,
    and an orphaned stage would finish unrecorded instead of keeping its checkpoints for the rerun.

    Linux watches only the direct parent, so when that is a shell, a thread watches the shell's parent.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):  # pragma: no cover - no prctl
        return
    launcher = _shell_launcher(os.getppid())
    started = _start_time(launcher) if launcher else None
    if launcher and launcher > 1 and started:
        threading.Thread(target=_watch, args=(launcher, started), name="launcher-watch", daemon=True).start()


def run_main(main: Callable[[], None]) -> None:
    """Run a stage's ``main``; a :class:`UserError` prints ``error: ...`` and exits 2.

    SIGTERM (what ``kill``, DVC and torchrun send) becomes an exception, so
    temporaries are removed and a training stage's checkpoints stay where the
    next run resumes from them; the exit status is 143. A stage whose parent
    (``dvc repro``, torchrun) dies receives SIGTERM too.
    """
    signal.signal(signal.SIGTERM, _terminate)
    _terminate_with_parent()
    try:
        main()
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
    except Exception:
        if _received:  # the cleanup ran as the exception unwound; exit as the signal asks
            sys.exit(128 + _received[0])
        raise
