"""Shared pytest fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]

#: Relative tolerance of a pinned number (golden fixture, committed reference trace) rerun on the processor that
#: made it: a refactor that reorders one float operation fails it.
SAME_CPU_RTOL = 1e-6
#: ... rerun on another processor (records.cpu_fingerprint() differs or was not recorded): torch, MKL, oneDNN and
#: numpy's BLAS pick other kernels there, and training amplifies their rounding. Measured between the machine the
#: committed fixtures were made on and an AMD EPYC (AVX2): up to 4.6e-6 on 3 epochs of tabular cells, 8.0e-5 on
#: the 3-epoch mnist-generator golden cell; 1e-3 leaves 12x of margin and still fails a changed setting.
OTHER_CPU_RTOL = 1e-3


def pinned_rtol(made_on: str | None) -> tuple[float, str]:
    """The tolerance for numbers made on processor ``made_on`` (a ``cpu`` fingerprint, None if unrecorded), and
    the phrase that says which it is, for failure messages."""
    from dfkd.records import cpu_fingerprint

    here = cpu_fingerprint()
    if made_on == here:
        return SAME_CPU_RTOL, f"rtol {SAME_CPU_RTOL:g}, same processor"
    return OTHER_CPU_RTOL, (f"rtol {OTHER_CPU_RTOL:g}: made on {made_on or 'an unrecorded processor'}, "
                            f"rerun on {here}")


def mirror_path() -> Path:
    """Where the real data files should be: $DFKD_DATA_MIRROR, else ``<repo>/../shared/data``."""
    return Path(os.environ.get("DFKD_DATA_MIRROR") or REPO_ROOT.parent / "shared" / "data").resolve()


def mirror_missing() -> str | None:
    """Why the data mirror is unusable, or None when it holds the data files."""
    path = mirror_path()
    if not (path / "pole" / "X.npy").is_file():
        return f"no data mirror at {path}: set DFKD_DATA_MIRROR to the shared data folder"
    return None


@pytest.hookimpl(tryfirst=True)  # before pytest's own -m selection, so `-m data` / `-m "not data"` see the mark
def pytest_collection_modifyitems(config, items):
    """Mark every test that uses the ``data_mirror`` fixture (directly or through another fixture)
    ``data``, and skip those, with the reason, where there is no mirror: the summary counts them."""
    why = mirror_missing()
    for item in items:
        if "data_mirror" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.data)
        if why and item.get_closest_marker("data"):
            item.add_marker(pytest.mark.skip(reason=why))


@pytest.fixture(scope="session")
def data_mirror() -> Path:
    """The folder holding the real data files, laid out like ``data/``.

    Taken from $DFKD_DATA_MIRROR, else ``<repo>/../shared/data``; tests that
    use it are marked ``data`` and skipped where neither exists.
    """
    why = mirror_missing()
    if why:
        pytest.skip(why)
    return mirror_path()


def toy_split(seed: int, d: int = 6, n_train: int = 200, n_val: int = 50, n_test: int = 80):
    """A small regression problem shaped like :class:`dfkd.data.Split` (float32 arrays)."""
    from dfkd.data.split import Split
    import numpy as np

    rng = np.random.default_rng(seed)
    w = rng.normal(size=d)

    def part(n):
        X = rng.normal(size=(n, d)).astype(np.float32)
        y = (np.tanh(X @ w) + 0.1 * rng.normal(size=n)).astype(np.float32)
        return X, y

    (a, b), (c, e), (f, g) = part(n_train), part(n_val), part(n_test)
    return Split(X_train=a, y_train=b, X_val=c, y_val=e, X_test=f, y_test=g)


@pytest.fixture
def toy_splits():
    """Three toy splits for seeds 1, 2, 3."""
    return [1, 2, 3], [toy_split(s) for s in (1, 2, 3)]


def tiny_settings(tmp: Path, mirror, overrides):
    """Run settings composed from conf/ with ``overrides``, all outputs under ``tmp`` and data from ``mirror``."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from dfkd.settings import settings_from_dict

    with initialize_config_dir(config_dir=str(REPO_ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=list(overrides) + [
            f"results_dir={tmp / 'results'}", f"teacher_dir={tmp / 'teachers'}", f"data_dir={tmp / 'data'}",
            f"data_mirror={mirror}"])
    return settings_from_dict(OmegaConf.to_container(cfg, resolve=True))


@pytest.fixture(scope="module")
def one_thread():
    """Tiny tensors: one thread is faster, and far faster on a busy machine (no waits at OpenMP barriers).
    Modules use it with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
