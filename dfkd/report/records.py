"""Load distillation records (one flat JSON file per run) into a DataFrame."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pandas as pd

#: Fields of a schema-1 distillation record, in display order.
RECORD_FIELDS = [
    "schema", "kind", "experiment", "dataset", "method", "alpha", "variant",
    "student", "student_hidden", "seed", "status", "failure_reason",
    "test_rmse", "test_mae", "test_rmse_last", "best_epoch", "val_rmse_best",
    "teacher_test_rmse", "teacher_val_rmse", "teacher_epochs", "teacher_test_mae", "test_mae_last",
    "epochs", "epochs_run", "steps_per_epoch", "batch_size", "wall_time_s",
    "config_hash", "git_commit", "device", "created",
]

#: Schema versions this reader understands.
KNOWN_SCHEMAS = {1}

_NUMERIC_FIELDS = [
    "test_rmse", "test_mae", "test_rmse_last", "val_rmse_best",
    "teacher_test_rmse", "teacher_val_rmse", "wall_time_s", "teacher_test_mae", "test_mae_last",
]


class RecordWarning(UserWarning):
    """A record file was skipped because it could not be read or understood."""


def _alpha_label(value) -> str | None:
    """Schedule label as a string; numbers become their shortest form ("1", "0.5")."""
    if value is None:
        return None
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, (int, float)):
        return f"{value:g}"
    return str(value)


def _normalize(rec: dict) -> dict:
    """Fill fields that older or hand-written records may leave implicit."""
    rec = dict(rec)
    rec["alpha"] = _alpha_label(rec.get("alpha"))
    if not rec.get("variant") and rec.get("method") and rec.get("alpha"):
        rec["variant"] = f"{rec['method']}/{rec['alpha']}"
    if not rec.get("student") and rec.get("student_hidden") is not None:
        rec["student"] = f"mlp{rec['student_hidden']}"
    return rec


def load_records(root) -> pd.DataFrame:
    """Read every ``*.json`` record under ``root``, recursively.

    The directory layout is not relied upon; only the fields inside each file
    are. A file that is not valid JSON, is not a JSON object, or declares an
    unknown schema is skipped with a one-line :class:`RecordWarning` naming it,
    so one corrupted file never hides the rest of a report.

    Args:
        root: Records root directory. A missing directory gives an empty frame.

    Returns:
        One row per record, with at least the columns of :data:`RECORD_FIELDS`
        plus ``path`` (the file it came from). Missing fields are NaN/None.
        ``df.attrs`` holds ``root`` (str) and ``skipped`` (list of paths).
    """
    root = Path(root)
    rows, skipped = [], []
    files = sorted(root.rglob("*.json")) if root.is_dir() else []
    for path in files:
        try:
            with open(path, encoding="utf-8") as fh:
                rec = json.load(fh)
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            skipped.append(str(path))
            warnings.warn(f"skipping unreadable record {path}: {reason}", RecordWarning, stacklevel=2)
            continue
        if not isinstance(rec, dict):
            skipped.append(str(path))
            warnings.warn(f"skipping record {path}: not a JSON object", RecordWarning, stacklevel=2)
            continue
        if rec.get("schema") not in KNOWN_SCHEMAS:
            skipped.append(str(path))
            warnings.warn(
                f"skipping record {path}: unknown schema {rec.get('schema')!r} "
                f"(this reader knows {sorted(KNOWN_SCHEMAS)})",
                RecordWarning, stacklevel=2,
            )
            continue
        rec = _normalize(rec)
        rec["path"] = str(path)
        rows.append(rec)

    columns = RECORD_FIELDS + ["path"]
    df = pd.DataFrame(rows)
    for col in columns:
        if col not in df.columns:
            df[col] = pd.Series(dtype=float if col in _NUMERIC_FIELDS else object)
    extra = [c for c in df.columns if c not in columns]
    df = df[columns + extra]
    # JSON null in a metric arrives as None; coercing keeps NaN arithmetic uniform.
    for col in _NUMERIC_FIELDS:
        df[col] = pd.to_numeric(df[col], errors="coerce").astype(float)
    df.attrs["root"] = str(root)
    df.attrs["skipped"] = skipped
    return df

