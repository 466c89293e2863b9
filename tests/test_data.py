"""Tests of the dataset registry, the loaders and the paper's split (dfkd.data)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from dfkd.data import DatasetSpec, Split, list_datasets, load_dataset, load_spec, make_split
from dfkd.data.loaders import LOADERS
from dfkd.data.registry import default_conf_dir
from dfkd.errors import ConfigError

PAPER_DATASETS = ["compactiv", "cpusmall", "ctscan", "indoorloc", "mv", "pole", "puma32h"]
OFFLINE_SHAPES = {
    "compactiv": (8192, 21),
    "cpusmall": (8192, 12),
    "indoorloc": (19937, 520),
    "mv": (40768, 10),
    "pole": (14998, 26),
    "puma32h": (8192, 32),
}


@pytest.fixture(scope="module")
def data_dir(data_mirror: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data dir that tests fill from the mirror (never the repo's data/)."""
    return tmp_path_factory.mktemp("data")


@pytest.fixture(scope="module")
def cpusmall(data_dir: Path, data_mirror: Path) -> tuple[np.ndarray, np.ndarray]:
    return load_dataset(load_spec("cpusmall"), data_dir, mirror=data_mirror)


# --- registry -------------------------------------------------------------------------------

def test_conf_dir_is_the_repositorys():
    assert (default_conf_dir() / "dataset" / "pole.yaml").is_file()


def test_every_paper_dataset_is_registered_with_a_known_format():
    assert set(PAPER_DATASETS) <= set(list_datasets())
    for name in PAPER_DATASETS:
        spec = load_spec(name)
        assert spec.name == name
        assert spec.format in LOADERS
        assert spec.origin.startswith("https://") and spec.licence and spec.target
        for f in spec.files:
            assert f.url.startswith("https://")
    assert load_spec("ctscan").files[0].sha256 is None
    assert load_spec("ctscan").files[0].url == (
        "https://archive.ics.uci.edu/static/public/206/relative+location+of+ct+slices+on+axial+axis.zip")
    assert (load_spec("ctscan").n_rows, load_spec("ctscan").n_features) == (53500, 384)


def test_pinned_checksums_match_the_shared_checksum_list(data_mirror: Path):
    listed = dict(reversed(line.split()) for line in (data_mirror / "checksums.sha256").read_text().splitlines())
    pinned = {f.path: f.sha256 for n in PAPER_DATASETS for f in load_spec(n).files if f.sha256}
    assert len(pinned) == 11  # 5 datasets x (X, y) + the Indoorloc zip
    for path, sha in pinned.items():
        assert listed[path] == sha, path


def test_urls_point_at_the_authors_pinned_commit():
    commit = "8d03cb0b9de313798c6299f0a45a0fefea909bf9"
    for name in set(OFFLINE_SHAPES):
        for f in load_spec(name).files:
            assert f"zhoutianxun/data_free_KD_regression/{commit}/datasets/" in f.url
            assert f.url.endswith(f.path.split("/")[-1])


def test_declared_shapes_are_the_papers():
    for name, shape in OFFLINE_SHAPES.items():
        spec = load_spec(name)
        assert (spec.n_rows, spec.n_features) == shape


GOOD = {"name": "toy", "format": "npy", "n_rows": 3, "n_features": 2,
        "files": [{"path": "toy/X.npy", "url": "https://example.org/X.npy", "sha256": "a" * 64},
                  {"path": "toy/y.npy", "url": "https://example.org/y.npy", "sha256": None}]}


def _with(**changes):
    d = {**GOOD, **changes}
    return {k: v for k, v in d.items() if v is not _DROP}


_DROP = object()


def test_from_dict_accepts_a_plain_dict_and_keeps_extra_keys():
    spec = DatasetSpec.from_dict({**GOOD, "note": "kept"})
    assert spec.n_rows == 3 and spec.files[1].sha256 is None and spec.extra == {"note": "kept"}
    assert not spec.available("/nonexistent")


@pytest.mark.parametrize("bad, needle", [
    (_with(n_rows=0), "n_rows"),
    (_with(n_features="2"), "n_features"),
    (_with(n_rows=True), "n_rows"),
    (_with(format=_DROP), "lacks format"),
    (_with(files=[]), "files"),
    (_with(files=[{"path": "x", "url": "https://e/x", "sha265": "a" * 64}]), "sha265"),
    (_with(files=[{"path": "../x", "url": "https://e/x", "sha256": None}]), "relative"),
    (_with(files=[{"path": "x", "url": "ftp://e/x", "sha256": None}]), "url"),
    (_with(files=[{"path": "x", "url": "https://e/x", "sha256": "abc"}]), "64 hex"),
    ("not a mapping", "mapping"),
])
def test_from_dict_rejects_malformed_specs_in_one_line(bad, needle):
    with pytest.raises(ConfigError) as e:
        DatasetSpec.from_dict(bad)
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_unknown_dataset_lists_the_known_ones():
    with pytest.raises(ConfigError, match="unknown dataset 'nope'.*pole"):
        load_spec("nope")


def test_unknown_format_is_a_config_error(tmp_path: Path):
    spec = DatasetSpec.from_dict(_with(format="parquet"))
    with pytest.raises(ConfigError, match="unknown format 'parquet'.*npy"):
        load_dataset(spec, tmp_path, mirror="")


# --- loaders on the real data ------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(OFFLINE_SHAPES))
def test_every_offline_dataset_loads_with_its_shape(name: str, data_dir: Path, data_mirror: Path):
    spec = load_spec(name)
    X, y = load_dataset(spec, data_dir, mirror=data_mirror)
    assert X.shape == OFFLINE_SHAPES[name] and y.shape == (OFFLINE_SHAPES[name][0],)
    assert X.dtype == np.float64 and y.dtype == np.float64
    assert np.isfinite(X).all() and np.isfinite(y).all()
    assert spec.available(data_dir)
    # Raw, not standardized: the files hold the original units.
    assert abs(float(y.std()) - 1.0) > 1e-3 or abs(float(y.mean())) > 1e-3


def test_indoorloc_target_is_longitude(data_dir: Path, data_mirror: Path):
    X, y = load_dataset(load_spec("indoorloc"), data_dir, mirror=data_mirror)
    # SOURCES.md: y1 = LONGITUDE, -7691.34 .. -7300.82; X = RSSI in -104..0 dBm, 100 = not detected.
    assert math.isclose(y.min(), -7691.34, abs_tol=0.01) and math.isclose(y.max(), -7300.82, abs_tol=0.01)
    assert X.max() == 100 and X.min() == -104


def test_second_load_reuses_the_installed_files(data_dir: Path, data_mirror: Path):
    X1, _ = load_dataset(load_spec("pole"), data_dir, mirror=data_mirror)
    X2, _ = load_dataset(load_spec("pole"), data_dir, mirror="")  # no mirror needed any more
    np.testing.assert_array_equal(X1, X2)


# --- split ----------------------------------------------------------------------------------

def _sizes(n_rows: int, n_train: int = 5000, val_fraction: float = 0.1) -> tuple[int, int, int]:
    rest = n_rows - n_train
    n_val = math.floor(val_fraction * rest)  # sklearn floors a fractional train_size
    return n_train, n_val, rest - n_val


def test_split_sizes_follow_the_paper(cpusmall):
    X, y = cpusmall
    assert _sizes(8192) == (5000, 319, 2873)
    s = make_split(X, y, seed=1)
    assert isinstance(s, Split)
    assert (len(s.X_train), len(s.X_val), len(s.X_test)) == (5000, 319, 2873)
    assert (len(s.y_train), len(s.y_val), len(s.y_test)) == (5000, 319, 2873)
    assert s.X_train.shape[1] == 12 and s.y_train.ndim == 1
    assert all(a.dtype == np.float32 for a in vars(s).values())


@pytest.mark.parametrize("name", ["mv", "pole"])
def test_split_sizes_on_larger_sets(name: str, data_dir: Path, data_mirror: Path):
    X, y = load_dataset(load_spec(name), data_dir, mirror=data_mirror)
    s = make_split(X, y, seed=2)
    assert (len(s.X_train), len(s.X_val), len(s.X_test)) == _sizes(len(X))
    assert _sizes(40768) == (5000, 3576, 32192) and _sizes(14998) == (5000, 999, 8999)


def test_split_is_the_authors_procedure(cpusmall):
    X, y = cpusmall
    s = make_split(X, y, seed=3)
    # The authors' process_data + convert_to_pytorch, written out.
    ys = StandardScaler().fit_transform(y.reshape(-1, 1)).reshape(-1)
    Xs = StandardScaler().fit_transform(X)
    Xtr, Xte, ytr, yte = train_test_split(Xs, ys, train_size=5000, random_state=3)
    Xva, Xte, yva, yte = train_test_split(Xte, yte, train_size=0.1, random_state=3)
    for got, ref in zip([s.X_train, s.y_train, s.X_val, s.y_val, s.X_test, s.y_test],
                        [Xtr, ytr, Xva, yva, Xte, yte]):
        np.testing.assert_array_equal(got, ref.astype(np.float32))


def _indexed(n: int = 2000, d: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(n, d))
    X[:, 0] = np.arange(n)  # a unique row id that survives standardization
    return X, rng.normal(size=n)


def test_split_parts_are_disjoint_and_cover_every_row():
    X, y = _indexed()
    s = make_split(X, y, seed=5, n_train=1200)
    ids = [set(part[:, 0].tolist()) for part in (s.X_train, s.X_val, s.X_test)]
    assert [len(i) for i in ids] == [1200, 80, 720]
    assert not (ids[0] & ids[1]) and not (ids[0] & ids[2]) and not (ids[1] & ids[2])
    assert len(ids[0] | ids[1] | ids[2]) == 2000


def test_split_is_deterministic_by_seed_and_differs_across_seeds():
    X, y = _indexed()
    a, b, c = (make_split(X, y, seed=s, n_train=1200) for s in (7, 7, 8))
    for name in vars(a):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert set(a.X_train[:, 0].tolist()) != set(c.X_train[:, 0].tolist())
    assert not np.array_equal(a.y_test, c.y_test)


def test_standardization_is_over_all_rows(cpusmall):
    X, y = cpusmall
    s = make_split(X, y, seed=4)
    X_all = np.concatenate([s.X_train, s.X_val, s.X_test]).astype(np.float64)
    y_all = np.concatenate([s.y_train, s.y_val, s.y_test]).astype(np.float64)
    np.testing.assert_allclose(X_all.mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(X_all.std(axis=0), 1.0, atol=1e-5)  # population std (ddof 0)
    assert abs(y_all.mean()) < 1e-5 and abs(y_all.std() - 1.0) < 1e-5
    # ...so the training part alone is NOT exactly standardized.
    assert abs(float(s.y_train.astype(np.float64).mean())) > 1e-4


def test_constant_column_is_centred_not_scaled():
    X, y = _indexed(500)
    X[:, 1] = 7.0
    s = make_split(X, y, seed=1, n_train=300)
    assert np.all(s.X_train[:, 1] == 0.0) and np.all(s.X_test[:, 1] == 0.0)


@pytest.mark.parametrize("kwargs, needle", [
    ({"n_train": 0}, "n_train"),
    ({"n_train": 2000}, "n_train"),
    ({"n_train": 2.5}, "n_train"),
    ({"val_fraction": 0.0}, "val_fraction"),
    ({"val_fraction": 1.0}, "val_fraction"),
    ({"seed": -1}, "seed"),
    ({"seed": True}, "seed"),
    ({"n_train": 1995}, "too few"),
])
def test_split_rejects_bad_arguments_in_one_line(kwargs, needle):
    X, y = _indexed()
    args = {"seed": 1, "n_train": 1200, **kwargs}
    with pytest.raises(ConfigError) as e:
        make_split(X, y, **args)
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_split_rejects_mismatched_arrays():
    X, y = _indexed()
    with pytest.raises(ConfigError, match="y must have shape"):
        make_split(X, y[:-1], seed=1, n_train=100)
