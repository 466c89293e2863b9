"""Load distillation records (one flat JSON file per run) into a DataFrame."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pandas as pd

from dfkd.records import NUMERIC_FIELDS, RECORD_FIELDS, SCHEMA, Record

#: Schema versions this reader understands.
KNOWN_SCHEMAS = {SCHEMA}


class RecordWarning(UserWarning):
    """A record file was skipped because it could not be read or understood."""


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
        rec = Record.from_dict(rec).to_dict(unset=True)
        rec["path"] = str(path)
        rows.append(rec)

    columns = RECORD_FIELDS + ["path"]
    df = pd.DataFrame(rows)
    for col in columns:
        if col not in df.columns:
            df[col] = pd.Series(dtype=float if col in NUMERIC_FIELDS else object)
    extra = [c for c in df.columns if c not in columns]
    df = df[columns + extra]
    # JSON null in a metric arrives as None; coercing keeps NaN arithmetic uniform.
    for col in NUMERIC_FIELDS:
        df[col] = pd.to_numeric(df[col], errors="coerce").astype(float)
    df.attrs["root"] = str(root)
    df.attrs["skipped"] = skipped
    return df

