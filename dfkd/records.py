"""Run records: one flat JSON file per (dataset, variant, student, seed).

A record is written last, atomically (temporary file in the same folder, fsync,
``os.replace``), so its presence means the run finished. Its ``config_hash``
covers everything that determines the numbers; a rerun skips a seed whose record
exists with the same hash, which is how an interrupted sweep resumes.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import tempfile
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path

SCHEMA = 1


def config_hash(obj) -> str:
    """A short stable hash of a JSON-serialisable object (keys sorted)."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see either nothing or the whole file.

    The temporary name is unique per process and call, so many writers (joblib
    workers, cluster jobs) can share one results folder without clobbering
    each other's partial files.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_json(path: Path, obj) -> None:
    """Atomically write ``obj`` as indented JSON."""
    atomic_write_bytes(path, (json.dumps(obj, indent=1, sort_keys=False, default=float) + "\n").encode())


def read_record(path: Path) -> dict | None:
    """The record at ``path``, or None if it is absent or unreadable (a damaged record is redone)."""
    try:
        with open(path) as fh:
            rec = json.load(fh)
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return None
    return rec if isinstance(rec, dict) and rec.get("schema") == SCHEMA else None


def record_dir(results_dir: Path, dataset: str, student: str, method: str, alpha_label: str) -> Path:
    """Deterministic folder of one cell's records: ``<results>/records/<dataset>/<student>/<method>-<alpha>``."""
    return Path(results_dir) / "records" / dataset / student / f"{method}-{alpha_label}"


def record_path(cell_dir: Path, seed: int) -> Path:
    """One seed's record file inside a cell folder."""
    return Path(cell_dir) / f"seed{int(seed):02d}.json"


@lru_cache(maxsize=1)
def git_commit() -> str:
    """The current commit of the suite's checkout (with ``+dirty`` if modified), or ``unknown``."""
    root = Path(__file__).resolve().parents[1]
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                             timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (sha or "unknown") + ("+dirty" if dirty else "")


def now_utc() -> str:
    """The current UTC time in ISO format, to the second (records' ``created``)."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
