"""User mistakes (bad data, bad params) versus bugs.

A :class:`UserError` is reported as one message on stderr with a non-zero exit;
anything else is a bug and keeps its traceback. Ctrl-C is one line too (exit 130).

Under ``dvc repro`` a failed stage has lost its previous outputs: DVC removes a
stage's outs (``cache: false`` ones included, unless ``persist: true``) before it
runs the command. :func:`run_main` then prints, after the error, the command that
brings them back (:func:`restore_hint`).
"""

from __future__ import annotations

import ctypes
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 128 + signal.SIGINT  # 130: what a shell reports for Ctrl-C
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


def _interrupt(signum: int, frame: Any) -> None:
    """Ctrl-C: Python's own KeyboardInterrupt, remembered (like SIGTERM) for a library that re-raises it as its own error."""
    _received.append(signum)
    raise KeyboardInterrupt


def stage_name() -> str:
    """The DVC stage this process runs (``DVC_STAGE``, set by ``dvc repro``), else its command line."""
    return os.environ.get("DVC_STAGE") or " ".join(["python", *map(shlex.quote, sys.argv)])


def _report_interrupt() -> None:
    rerun = "rerun dvc repro to resume" if os.environ.get("DVC_STAGE") else "rerun the command to resume"
    _say(f"interrupted: {stage_name()} stopped; temporary files removed; {rerun}")


def _say(line: str) -> None:
    try:
        print(line, file=sys.stderr, flush=True)
    except (OSError, ValueError):  # stderr gone with the terminal or the parent
        pass


# ----------------------------------------------------------- outputs DVC removed


def _dvc_outs(stage: str, wdir: Path) -> list[tuple[str, bool, bool]] | None:
    """``(path, cache, persist)`` of each out, metric and plot of ``stage`` (``name`` or ``name@key``),
    read by DVC itself; None when DVC cannot find the stage."""
    try:
        from dvc.repo import Repo

        with Repo(str(wdir)) as repo:
            (found,) = repo.stage.collect(f"{wdir / 'dvc.yaml'}:{stage.rpartition(':')[2]}")
            return [(str(o.def_path), bool(o.use_cache), bool(o.persist)) for o in found.outs]
    except Exception:  # a hint must never hide the error it follows
        return None


def _in_lock(stage: str, wdir: Path) -> bool:
    """Whether ``dvc.lock`` records an earlier successful run of ``stage`` (something to restore)."""
    import yaml

    try:
        return stage.rpartition(":")[2] in (yaml.safe_load((wdir / "dvc.lock").read_text()) or {}).get("stages", {})
    except (OSError, yaml.YAMLError, AttributeError):
        return False


def _git_tracked(paths: list[str], wdir: Path) -> list[str]:
    """The paths with a file in git's index (``git checkout`` refuses the whole command over one it does not know);
    every path when git cannot tell."""
    try:
        proc = subprocess.run(["git", "ls-files", "-z", "--", *paths], cwd=wdir, capture_output=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return paths
    if proc.returncode != 0:
        return paths
    files = [f for f in proc.stdout.decode(errors="replace").split("\0") if f]
    return [p for p in paths if any(f == p or f.startswith(p.rstrip("/") + "/") for f in files)]


def restore_hint(stage: str | None = None, wdir: Path | None = None) -> str | None:
    """The command that brings back the outputs ``dvc repro`` removed before running ``stage``, or None.

    DVC deletes a stage's outs before its command runs (all but ``persist: true`` ones,
    ``cache: false`` ones included), and a failed stage leaves ``dvc.lock`` as it was:
    ``dvc checkout STAGE`` restores the cached outs of its last successful run, ``git checkout
    HEAD -- ...`` the committed ``cache: false`` ones (metrics, plots, reports). None when the
    process was not started by DVC (nothing was removed: stages write their outputs atomically)
    or ``dvc.lock`` holds no earlier run of the stage.
    """
    stage = stage or os.environ.get("DVC_STAGE")
    if not stage:
        return None
    wdir = Path.cwd() if wdir is None else Path(wdir)
    outs = _dvc_outs(stage, wdir)
    if outs is None:
        return f"DVC removed {stage}'s outputs before running it; restore them with: dvc checkout {shlex.quote(stage)}"
    removed = [(path, cache) for path, cache, persist in outs if not persist]
    if not removed or not _in_lock(stage, wdir):
        return None
    cached = any(cache for _, cache in removed)
    committed = _git_tracked([path for path, cache in removed if not cache], wdir)
    commands = [f"dvc checkout {shlex.quote(stage)}"] * cached
    commands += [f"git checkout HEAD -- {' '.join(map(shlex.quote, committed))}"] if committed else []
    if not commands:
        return None
    return f"DVC removed {stage}'s outputs before running it; to get the last good ones back: {' && '.join(commands)}"


def _failure_hint() -> str | None:
    """:func:`restore_hint` as the line printed after a failure (rank 0 only under torchrun), or None."""
    if os.environ.get("RANK", "0") != "0":
        return None
    try:
        hint = restore_hint()
    except Exception:  # never let the hint hide the error it follows
        return None
    return f"restore: {hint}" if hint else None


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


def terminate_with_parent() -> None:
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
    (``dvc repro``, torchrun) dies receives SIGTERM too. Ctrl-C (SIGINT)
    unwinds the same way and prints one line, ``interrupted: ...``; exit 130.

    Under ``dvc repro``, an error (a user's or a bug's) is followed by the
    command that restores the stage's previous outputs, which DVC removed
    before running it (:func:`restore_hint`).
    """
    signal.signal(signal.SIGTERM, _terminate)
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:  # not where the parent ignores Ctrl-C
        signal.signal(signal.SIGINT, _interrupt)
    terminate_with_parent()
    try:
        main()
    except UserError as exc:
        if _received and _received[0] == signal.SIGINT:  # a library turned Ctrl-C into an error of its own
            _report_interrupt()
            sys.exit(EXIT_INTERRUPTED)
        print(f"error: {exc}", file=sys.stderr)
        if hint := _failure_hint():
            _say(hint)
        sys.exit(EXIT_USER_ERROR)
    except KeyboardInterrupt:
        _report_interrupt()
        sys.exit(EXIT_INTERRUPTED)
    except Exception:
        if _received:  # the cleanup ran as the exception unwound; exit as the signal asks
            if _received[0] == signal.SIGINT:
                _report_interrupt()
            sys.exit(128 + _received[0])
        hint = _failure_hint()
        if hint is None:
            raise
        traceback.print_exc()  # a bug keeps its traceback; then the way back to the last good outputs
        _say(hint)
        sys.exit(1)
