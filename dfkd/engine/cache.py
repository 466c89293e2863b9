"""The on-disk teacher cache: one file per (dataset, seed, teacher config).

Teachers are trained once and reused by all five variants and both student
sizes. A file's name carries the key (a hash of everything that determines the
teacher), and its metadata is checked on load, so a file for another dataset,
shape or protocol is refused with a message instead of silently used.
"""

from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager
from pathlib import Path

import torch

from dfkd.errors import TeacherError
from dfkd.records import atomic_write_bytes


def teacher_path(cache_dir: Path, dataset: str, seed: int, key: str) -> Path:
    """Where the teacher for (dataset, seed) with this key lives."""
    return Path(cache_dir) / dataset / f"seed{int(seed):02d}-{key}.pt"


def save_teacher(path: Path, params: dict, meta: dict) -> None:
    """Atomically store one teacher's parameters (nn.Linear layout) and metadata.

    The metadata gains ``threads``, the intra-op thread count it was trained with: training is bit-reproducible
    only at the same count (measured: an MNIST teacher trained with 2 threads differs from the 1-thread one by
    4e-3 in its weights after 2 epochs on 2000 images, and after 15 full epochs by 0.09 in test RMSE), so a
    teacher retrained with another ``threads`` is another teacher under the same key.
    """
    import io

    buf = io.BytesIO()
    torch.save({"params": params, "meta": dict(meta, threads=torch.get_num_threads())}, buf)
    atomic_write_bytes(path, buf.getvalue())


def load_teacher(path: Path, expect: dict, mlp_shape: bool = True, hint: str = "run `make teachers`") -> tuple[dict, dict]:
    """Load a teacher and check its metadata against ``expect`` (dataset, seed, d_in, hidden, key).

    ``mlp_shape``: also check the tabular MLP's first weight against ``d_in`` and ``hidden``
    (other architectures are identified by their key alone). ``hint``: the command that trains it.
    """
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
        params, meta = blob["params"], blob["meta"]
    except FileNotFoundError:
        raise TeacherError(f"teacher checkpoint {path} is missing: {hint} "
                           f"(or drop train_teachers_if_missing=false)") from None
    except Exception as exc:  # any unpickling/format problem means the file is unusable
        raise TeacherError(f"teacher checkpoint {path} is unreadable ({type(exc).__name__}): delete it and "
                           f"{hint}") from None
    for field, want in expect.items():
        if meta.get(field) != want:
            raise TeacherError(f"teacher checkpoint {path} has {field}={meta.get(field)!r}, expected {want!r}: "
                               f"it belongs to another dataset or config; delete it and {hint}")
    if not mlp_shape:
        return params, meta
    w1 = params.get("w1")
    if w1 is None or tuple(w1.shape) != (expect.get("hidden", w1.shape[0]), expect.get("d_in", w1.shape[1])):
        raise TeacherError(f"teacher checkpoint {path} has weights of shape {None if w1 is None else tuple(w1.shape)}, "
                           f"expected {(expect.get('hidden'), expect.get('d_in'))}: delete it and {hint}")
    return params, meta


@contextmanager
def file_lock(path: Path):
    """An exclusive advisory lock, so parallel jobs train a dataset's teachers once."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
