"""User mistakes (bad data, bad params) versus bugs.

A :class:`UserError` is reported as one message on stderr with a non-zero exit;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import ctypes
import signal
import sys
from collections.abc import Callable
from typing import Any

EXIT_USER_ERROR = 2
PR_SET_PDEATHSIG = 1  # linux/prctl.h


class UserError(ValueError):
    """Invalid input from the user: the message names the file, column, rows or param."""


class Terminated(SystemExit):
    """SIGTERM, raised in the main thread so that cleanup (``finally``) runs before the exit."""


def _terminate(signum: int, frame: Any) -> None:
    print(f"error: stopped by signal {signal.Signals(signum).name}; temporary files removed", file=sys.stderr)
    raise Terminated(128 + signum)


def _terminate_with_parent() -> None:
    """Ask Linux for SIGTERM when the parent dies: DVC killed mid-stage does not forward signals,
    and an orphaned stage would finish unrecorded instead of keeping its checkpoints for the rerun."""
    if not sys.platform.startswith("linux"):
        return
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):  # pragma: no cover - no prctl
        pass


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
