"""User mistakes (bad data, bad params) versus bugs.

A :class:`UserError` is reported as one message on stderr with a non-zero exit;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

EXIT_USER_ERROR = 2


class UserError(ValueError):
    """Invalid input from the user: the message names the file, column, rows or param."""


def run_main(main: Callable[[], None]) -> None:
    """Run a stage's ``main``; a :class:`UserError` prints ``error: ...`` and exits 2."""
    try:
        main()
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
