"""Shared pytest fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def data_mirror() -> Path:
    """The folder holding the real data files, laid out like ``data/``.

    Taken from $DFKD_DATA_MIRROR, else ``<repo>/../shared/data``; tests that
    need it are skipped where neither exists.
    """
    path = Path(os.environ.get("DFKD_DATA_MIRROR") or REPO_ROOT.parent / "shared" / "data")
    if not (path / "pole" / "X.npy").is_file():
        pytest.skip(f"no data mirror at {path}: set DFKD_DATA_MIRROR to the shared data folder")
    return path
