"""Mid-run checkpoints of a training stack, so that an interrupted stack resumes where it was.

A stack of the full protocol can take hours (MNIST Table 5, the eSol DE cell); its
records are written only when it finishes. :class:`Checkpoint` lets
:func:`dfkd.engine.distill.distill` save, every ``every_s`` seconds of wall time and
at an epoch boundary, everything its next epoch depends on: the epoch, the student's
parameters and optimizer state, the best copies and traces so far, every random
stream's state, the method's own state (:meth:`dfkd.methods.base.Method.state_dict`)
and a black-box teacher's query counts. A rerun that finds the file continues from
it and produces exactly the numbers of an uninterrupted run.

The file is a ``torch.save`` of plain tensors, numbers, strings, lists and dicts
(read back with ``weights_only=True``, so no code is unpickled), written atomically.
Its ``key`` names what it belongs to (the runner's pending seeds and their config
hashes); a file with another key, format or version, or one that cannot be read, is
reported in one line and ignored: the stack starts over.
"""

from __future__ import annotations

import io
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from dfkd.core.state import one_line
from dfkd.records import atomic_write_bytes

FORMAT = "dfkd-stack-checkpoint"
VERSION = 1


def read_checkpoint(path) -> dict:
    """A checkpoint file's contents (its ``key``, ``epoch``, ``epochs``, ``elapsed_s``, ``saved_at``, ...).

    Raises:
        Exception: whatever reading raises for a missing, damaged or foreign file, or ``ValueError`` for a file of
            another format or version.
    """
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError("not a dfkd stack checkpoint")
    if state.get("version") != VERSION:
        raise ValueError(f"format version {state.get('version')!r}, this code reads {VERSION}")
    return state


def _short(values) -> str:
    """Numbers for a message: up to three, 6 significant digits."""
    values = list(values)
    text = ", ".join(f"{float(v):.6g}" for v in values[:3])
    return text + (f", ... ({len(values)})" if len(values) > 3 else "")


class Checkpoint:
    """One stack's checkpoint file and the policy of when to write it.

    Args:
        path: the file (the runner uses ``<cell>/.ckpt-<hash of the pending seeds' config hashes>.pt``).
        every_s: seconds of wall time between saves; 0 = never save (a file already there is still resumed from).
        key: what the file must belong to (JSON-like: lists, dicts, strings, numbers); a file with another
            key is not used.
        log: where the one-line messages go (resuming, a damaged or foreign file, a failed save).
        on_resume: optional callable ``(epoch)`` told the epoch training resumes at (e.g. to move a progress bar).
        commit: the code version doing the training (the runner passes the git commit); saved in the file, so a
            stack resumed across code changes can say which versions trained which epochs (:attr:`segments`).
        teachers: optional fingerprint of the teachers the stack distils from (the runner passes each replica's
            teacher test RMSE). A teacher's cache key names its config, not the network: retrained elsewhere (on
            another processor, say) the same key holds another network, and students trained against the old one
            must not continue against it. A file saved with other teachers is moved aside (``.rejected``) and the
            stack starts over; a file saved without a fingerprint (older code) is used as before.

    Attributes:
        seconds: time spent reading and writing the file in this process (the runner counts it as
            bookkeeping, not training).
        prior_s: training time of the run(s) before the epoch resumed from (0 when starting fresh).
        resumed_epoch: the epoch training resumed at, or None.
        saves: files written in this process.
        segments: ``[{"from_epoch": e, "git_commit": c}, ...]``, the runs that trained this stack so far, oldest
            first; one entry (this run, from epoch 0) unless it resumed.
    """

    def __init__(self, path, every_s: float = 300.0, key=None, log=print, on_resume=None, commit: str = "unknown",
                 teachers=None):
        self.path = Path(path)
        self.commit = commit
        self.teachers = list(teachers) if teachers is not None else None
        self.segments = [{"from_epoch": 0, "git_commit": commit}]
        self.on_resume = on_resume
        self.every_s = float(every_s)
        self.key = key
        self.log = log
        self.seconds = 0.0
        self.prior_s = 0.0
        self.resumed_epoch = None
        self.saves = 0
        self._last = time.perf_counter()
        self._save_failed = False

    def due(self) -> bool:
        """Whether ``every_s`` seconds have passed since the start or the last save."""
        return self.every_s > 0 and not self._save_failed and time.perf_counter() - self._last >= self.every_s

    def load(self) -> dict | None:
        """The saved state, or None when there is no usable file (a damaged or foreign one is reported)."""
        t0 = time.perf_counter()
        try:
            if not self.path.exists():
                return None
            try:
                state = read_checkpoint(self.path)
            except Exception as exc:  # any damage: report, start over, never crash a run
                self.log(f"checkpoint {self.path.name} is damaged or unreadable ({one_line(exc)}): ignored, "
                         f"starting over")
                return None
            if state.get("key") != self.key:
                self.log(f"checkpoint {self.path.name} belongs to other seeds or settings: not used, starting over")
                return None
            saved = state.get("teachers")
            if self.teachers is not None and saved is not None and not np.array_equal(
                    np.asarray(saved, dtype=float), np.asarray(self.teachers, dtype=float), equal_nan=True):
                aside = self._move_aside()
                self.log(f"checkpoint {self.path.name} was trained against other teachers (test RMSE "
                         f"{_short(saved)}, the cached ones now {_short(self.teachers)}: retrained since, e.g. on "
                         f"another machine): kept as {aside.name}, starting over; to resume it instead, put back "
                         f"the teacher cache it was trained with and rename it back")
                return None
            return state
        finally:
            self.seconds += time.perf_counter() - t0

    def rejected(self, exc: BaseException, state: dict | None = None) -> Path:
        """Report a file that loaded but could not be restored (it does not fit the stack), and move it aside to
        ``<name>.rejected`` so that the fresh run's saves never overwrite the hours it may hold.

        Returns:
            Where the file now is.
        """
        aside = self._move_aside()
        segments = (state or {}).get("segments")
        writer = segments[-1].get("git_commit") if isinstance(segments, list) and segments else None
        self.log(f"checkpoint {self.path.name} does not fit this stack ({one_line(exc)}): kept as {aside.name}, "
                 f"starting over; to resume it instead, rerun with the code that wrote it"
                 + (f" (commit {writer})" if writer else "") + " after renaming it back")
        return aside

    def _move_aside(self) -> Path:
        """Rename the file to ``<name>.rejected`` (so a fresh run's saves never overwrite the hours it may hold);
        returns where it now is."""
        aside = self.path.with_name(self.path.name + ".rejected")
        try:
            self.path.replace(aside)
        except OSError:
            aside = self.path
        return aside

    def resumed(self, state: dict, seeds) -> None:
        """Note (and log in one line) that the stack of ``seeds`` continues from ``state``."""
        self.resumed_epoch = int(state["epoch"])
        self.prior_s = float(state.get("elapsed_s", 0.0))
        earlier = state.get("segments")  # absent in files written before segments were kept
        earlier = earlier if isinstance(earlier, list) else [{"from_epoch": 0, "git_commit": "unknown"}]
        self.segments = earlier + [{"from_epoch": self.resumed_epoch, "git_commit": self.commit}]
        changed = earlier[-1].get("git_commit") != self.commit
        self.log(f"resuming seeds {list(seeds)} from epoch {self.resumed_epoch} "
                 f"(checkpoint of {state.get('saved_at', 'unknown time')}"
                 + (f", written by commit {earlier[-1].get('git_commit')}; now {self.commit}" if changed else "")
                 + ")")
        if self.on_resume is not None:
            self.on_resume(self.resumed_epoch)

    def save(self, state: dict) -> None:
        """Write ``state`` (plus format, version, key and time) atomically; a failed write is reported once
        and training goes on (the checkpoint is a convenience, the records are the result)."""
        t0 = time.perf_counter()
        try:
            buf = io.BytesIO()
            extra = {} if self.teachers is None else {"teachers": self.teachers}
            torch.save({"format": FORMAT, "version": VERSION, "key": self.key, "segments": self.segments, **extra,
                        "saved_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), **state}, buf)
            atomic_write_bytes(self.path, buf.getvalue())
            self.saves += 1
        except OSError as exc:
            if not self._save_failed:
                self.log(f"cannot write checkpoint {self.path} ({one_line(exc)}): going on without checkpoints")
            self._save_failed = True
        finally:
            now = time.perf_counter()
            self.seconds += now - t0
            self._last = now

    def remove(self) -> None:
        """Delete the file (once the stack's results are committed)."""
        self.path.unlink(missing_ok=True)
