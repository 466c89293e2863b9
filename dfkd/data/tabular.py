"""Tabular datasets: install (from a mirror or URL), verify and read one into raw ``(X, y)`` arrays."""

from __future__ import annotations

import os

import numpy as np

from dfkd.data.fetch import ensure_dataset
from dfkd.data.loaders import check_loaded, loader_for
from dfkd.data.registry import DatasetSpec


def load_dataset(spec: DatasetSpec, data_dir: str | os.PathLike = "data",
                 mirror: str | os.PathLike | None = None, *,
                 allow_download: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Installs (if needed), verifies and reads a dataset.

    Args:
        spec: The dataset.
        data_dir: The data directory.
        mirror: A mirror folder to install missing files from; None uses
            $DFKD_DATA_MIRROR when set.
        allow_download: Whether missing files may be downloaded from their URLs.

    Returns:
        ``(X, y)``: raw, unscaled float64 arrays of shapes
        ``(n_rows, n_features)`` and ``(n_rows,)``.

    Raises:
        DataMissingError: If a file is absent and cannot be installed.
        DataError: If a file fails its checksum, does not load, has the wrong
            shape or holds NaN/inf.
        ConfigError: If the format is unknown or the mirror is not a folder.
    """
    loader = loader_for(spec)
    ensure_dataset(spec, data_dir, mirror, allow_download=allow_download)
    paths = {f.path: spec.file_path(f, data_dir) for f in spec.files}
    return check_loaded(spec, loader(spec, paths))
