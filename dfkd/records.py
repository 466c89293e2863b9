"""Run records: one flat JSON file per (dataset, variant, student, seed).

A record is written last, atomically (temporary file in the same folder, fsync,
``os.replace``), so its presence means the run finished. Its ``config_hash``
covers everything that determines the numbers; a rerun skips a seed whose record
exists with the same hash, which is how an interrupted sweep resumes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import subprocess
import tempfile
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path

SCHEMA = 1


def alpha_label(value) -> str | None:
    """An alpha schedule's label as a string; numbers become their shortest form ("1", "0.5")."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return str(value)
    return f"{value:g}"


def real_label(fraction=None, rows=None) -> str:
    """The variant-name suffix of a cell with real rows (the data-scarce setting): ``p0.1`` for
    ``real_fraction=0.1``, ``n500`` for ``real_rows=500``; '' for a data-free cell."""
    if rows not in (None, 0):
        return f"n{int(rows)}"
    if fraction not in (None, 0, 0.0):
        return f"p{float(fraction):g}"
    return ""


def variant_name(method: str, alpha, real: str = "") -> str:
    """The one name of a (method, alpha) pair, as config, record, folder and table use it: ``direct-1``;
    with real rows their label follows (:func:`real_label`): ``tsm-1-p0.1``."""
    return f"{method}-{alpha_label(alpha)}" + (f"-{real}" if real else "")


@dataclasses.dataclass
class Record:
    """One run's flat, self-describing record: the cell writes it (:meth:`to_dict`), the report reads it
    (:meth:`from_dict`). Fields a run of some kind does not have (image counts for tables, teacher queries for
    network teachers) stay None and are left out of the file."""

    dataset: str
    method: str
    alpha: str
    student: str
    seed: int
    schema: int = SCHEMA
    kind: str = "distill"
    experiment: str | None = None
    variant: str | None = None  # always variant_name(method, alpha, real_label(real_fraction, real_rows))
    real_fraction: float | None = None  # the data-scarce setting: the fraction of the training split given (or None)
    real_rows: int | None = None  # how many real training rows the cell had (None: data-free)
    student_hidden: int | None = None
    student_arch: str | None = None
    teacher: str | None = None
    status: str = "ok"
    failure_reason: str | None = None
    test_rmse: float | None = None  # of the best-validation student
    test_mae: float | None = None
    test_rmse_last: float | None = None  # of the last epoch's student
    test_mae_last: float | None = None
    best_epoch: int | None = None
    val_rmse_best: float | None = None
    teacher_test_rmse: float | None = None
    teacher_test_mae: float | None = None
    teacher_val_rmse: float | None = None
    teacher_epochs: int | None = None
    epochs: int | None = None
    epochs_run: int | None = None
    steps_per_epoch: int | None = None
    batch_size: int | None = None
    replicas: int | None = None
    wall_time_s: float | None = None  # the stack's training time over its replicas
    stack_wall_time_s: float | None = None
    bookkeeping_s: float | None = None
    data_s: float | None = None
    config_hash: str | None = None
    teacher_key: str | None = None
    git_commit: str | None = None
    device: str | None = None
    threads: int | None = None
    host: str | None = None
    cpu: str | None = None  # records.cpu_fingerprint(): where the numbers were made, as far as rounding goes
    torch_version: str | None = None
    numpy_version: str | None = None
    python_version: str | None = None
    created: str | None = None
    data_sha256: list | None = None
    method_params: dict | None = None
    alpha_schedule: str | None = None
    alpha_value: float | None = None
    trace_file: str | None = None
    config: dict | None = None  # the whole resolved config of the run
    teacher_queries: int | None = None  # black-box teachers: rows asked during distillation
    training_segments: list | None = None  # stacks resumed across runs: which commit trained which epochs
    student_loss: str | None = None  # image runs
    subset: dict | None = None
    n_train_images: int | None = None
    n_val_images: int | None = None
    n_test_images: int | None = None
    synthetic_samples: int | None = None
    extra: dict = dataclasses.field(default_factory=dict)  # fields of other writers, kept as they are

    def __post_init__(self):
        self.alpha = alpha_label(self.alpha)
        real = real_label(self.real_fraction, self.real_rows if self.real_fraction in (None, 0) else None)
        self.variant = variant_name(self.method, self.alpha, real) if self.method and self.alpha else None

    def to_dict(self, unset: bool = False) -> dict:
        """The record as written: every field that is set (``unset``: every field, as the report's frame row
        has it), then ``extra``'s."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
               if f.name != "extra" and (unset or getattr(self, f.name) is not None or f.name in _ALWAYS)}
        return {**out, **self.extra}

    @classmethod
    def from_dict(cls, data: dict) -> Record:
        """A record read from a file (older files may lack fields, which stay None; ``student`` falls back to
        ``mlp<student_hidden>``); keys this schema does not name go to ``extra``."""
        data = dict(data)
        if not data.get("student") and data.get("student_hidden") is not None:
            data["student"] = f"mlp{data['student_hidden']}"
        known = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        extra = {k: data.pop(k) for k in list(data) if k not in known}
        for key in ("dataset", "method", "alpha", "student", "seed"):
            data.setdefault(key, None)
        return cls(**data, extra=extra)


#: Fields every record file carries, set or not (a failed run's metrics are null, not absent).
_ALWAYS = {"dataset", "method", "alpha", "variant", "student", "seed", "status", "failure_reason", "test_rmse",
           "test_mae"}
RECORD_FIELDS = [f.name for f in dataclasses.fields(Record) if f.name != "extra"]
NUMERIC_FIELDS = [f.name for f in dataclasses.fields(Record) if f.type in ("float | None", "float")]


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


def record_dir(results_dir: Path, dataset: str, student: str, variant: str) -> Path:
    """Deterministic folder of one cell's records: ``<results>/records/<dataset>/<student>/<variant>``
    (:func:`variant_name`)."""
    return Path(results_dir) / "records" / dataset / student / variant


def record_path(cell_dir: Path, seed: int) -> Path:
    """One seed's record file inside a cell folder."""
    return Path(cell_dir) / f"seed{int(seed):02d}.json"


#: What the numbers depend on: a change outside these (README, docs, tests, results) leaves a record clean.
CODE_PATHS = ("dfkd", "conf", "experiments", "pyproject.toml", "setup.py", "requirements.lock")


@lru_cache(maxsize=1)
def git_commit() -> str:
    """The current commit of the suite's checkout, or ``unknown``; ``+dirty`` when its code differs from it (the
    package, configs, experiment specs or build files: edits to docs or tests change no number)."""
    root = Path(__file__).resolve().parents[1]
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                             timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", *CODE_PATHS], cwd=root,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (sha or "unknown") + ("+dirty" if dirty else "")


#: /proc/cpuinfo flags that choose a kernel path in torch, MKL, oneDNN or numpy's BLAS (so change float rounding).
_NUMERIC_FLAGS = ("avx", "avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_tile")


@lru_cache(maxsize=1)
def cpu_fingerprint() -> str:
    """The processor as far as it decides float rounding: vendor, model, the kernel-choosing ISA flags and the
    kernel set torch picked (records' ``cpu``). Two machines with the same fingerprint and software give the same
    numbers bit for bit; others may differ at float rounding (measured: up to 5e-6 relative on tabular cells and
    8e-5 on a 3-epoch MNIST cell between the machine the references were made on and an AMD EPYC)."""
    import platform

    import torch

    info: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            info.setdefault(key.strip(), value.strip())
            if key.strip() == "flags":
                break
    except OSError:
        pass
    flags = set(info.get("flags", "").split())
    isa = "+".join(f for f in _NUMERIC_FLAGS if f in flags) or "?"
    model = " ".join(x for x in (info.get("vendor_id"), info.get("model name")) if x) or platform.processor() \
        or platform.machine()
    return f"{model}; {isa}; torch {torch.backends.cpu.get_cpu_capability()}"


def now_utc() -> str:
    """The current UTC time in ISO format, to the second (records' ``created``)."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
