"""The ``--out`` folder of ``python -m lenet_course train``: what it may hold, its creation and the
lock a run holds while it writes there, and what a stopped run left in it."""

import argparse
import contextlib
import errno
import os
from collections.abc import Iterator
from pathlib import Path

from lenet_course import distributed
from lenet_course.checkpoint import RUN_FILES, CheckpointError, load_checkpoint


def check_out(args: argparse.Namespace) -> tuple[Path, bool, bool]:
    """(out, resume, overwrite), refusing an unwritable --out or one whose run no flag names."""
    out = Path(args.out)
    try:
        # out, or its nearest parent that is there (a link to nothing is there, not existing)
        there = next(p for p in (out, *out.parents) if p.exists() or p.is_symlink())
        held = [name for name in RUN_FILES if (out / name).exists()]
    except OSError as error:  # a parent that may not be searched, say
        args.parser.error(f"--out {out}: {error.strerror}; pass a folder you may write to")
    if not there.exists():
        args.parser.error(f"--out {out}: {there} is a symbolic link to nothing (or a loop)")
    if not (there.is_dir() and os.access(there, os.W_OK | os.X_OK)):
        why = "cannot be written" if there.is_dir() else "is not a folder"
        args.parser.error(f"--out {out}: {there} {why}; pass a folder you may write to")
    # torchrun restarts a failed group with the same flags: resume what it saved, never delete it.
    resume = args.resume or (distributed.restarted() and RUN_FILES[0] in held)
    overwrite = args.overwrite and not resume
    if held and not (resume or overwrite):
        fix = "pass --resume to continue it, --overwrite to replace it, or another --out"
        args.parser.error(f"--out {out} already holds a run ({', '.join(held)}); {fix}")
    if resume and RUN_FILES[0] not in held:
        args.parser.error(f"--resume: no checkpoint at {out / RUN_FILES[0]} to continue")
    return out, resume, overwrite


@contextlib.contextmanager
def claim(args: argparse.Namespace, out: Path) -> Iterator[None]:
    """Create --out (a full disk: exit 1, another refusal: exit 2), then hold ``out/.lock`` (our
    pid) while the block runs: a second writer fails at once."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        why = f"--out {out}: cannot create it ({error.strerror})"
        if error.errno in (errno.ENOSPC, errno.EDQUOT):
            raise OSError(f"{why}; free some space or pass another --out") from None
        args.parser.error(f"{why}; pass a folder you may write to")
    lock, pid = out / ".lock", os.getpid()
    try:
        os.kill(int(lock.read_text()), 0)  # signal 0 only asks whether the process exists
    except (ProcessLookupError, ValueError, OverflowError):
        lock.unlink(missing_ok=True)  # its process has gone, or it holds no pid: stale
    except OSError:
        pass  # no lock, or one we cannot judge: os.link decides
    # The pid goes into a file of our own, then one link gives it the lock's name (and fails if
    # there is a lock): no lock is ever empty, even when the disk is full or Ctrl-C comes.
    mine = out / f".lock.{pid}"
    try:
        mine.write_text(str(pid))
        os.link(mine, lock)
    except FileExistsError:
        busy = f"--out {out} is in use by another run (pid in {lock})"
        fix = "wait, or pass another --out (delete the lock if no run uses it)"
        raise FileExistsError(f"{busy}; {fix}") from None
    except OSError as error:  # a full disk, say
        raise OSError(f"--out {out}: cannot write its lock ({error.strerror})") from error
    finally:
        mine.unlink(missing_ok=True)
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)  # also when the run fails


def saved_state(checkpoint: Path, epochs: int) -> tuple[str, str]:
    """(when the run stopped, what its checkpoint holds), after Ctrl-C or a failed write."""
    try:
        saved = load_checkpoint(checkpoint)["epoch"] if checkpoint.is_file() else 0
    except (CheckpointError, KeyboardInterrupt):  # KeyboardInterrupt: a second one, raised
        return "", f"the checkpoint in {checkpoint.parent} holds the last epoch saved"
    if not saved:
        return " in epoch 1", "no epoch had finished, so nothing was saved; train again"
    holds = f"the checkpoint in {checkpoint.parent} holds epoch {saved}"
    if saved >= epochs:
        return " after the last epoch", f"{holds}; --resume writes metrics.json and history.csv"
    return f" in epoch {saved + 1}", f"{holds}; continue with --resume"
