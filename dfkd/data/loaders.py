"""Reading a dataset's files into raw feature and target arrays.

One function per file ``format`` (the key in ``conf/dataset/<name>.yaml``),
registered in :data:`LOADERS`; adding a format is one decorated function here
and one YAML. A loader receives the spec and a mapping from each file's
``path`` (as in the spec) to its location on disk, and returns the raw,
unscaled arrays; :func:`load_dataset` checks shapes and values for all
formats alike.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path, PurePosixPath
from typing import NamedTuple

import numpy as np

from dfkd.data.registry import DatasetSpec
from dfkd.errors import ConfigError, DataError


class Loaded(NamedTuple):
    """Raw arrays read by a loader, with where each came from (for error messages)."""

    X: np.ndarray
    y: np.ndarray
    x_from: str
    y_from: str


Loader = Callable[[DatasetSpec, Mapping[str, Path]], Loaded]
LOADERS: dict[str, Loader] = {}

_DAMAGED = "the file is damaged; delete it and run `make data`"


def register(fmt: str) -> Callable[[Loader], Loader]:
    """Registers the decorated function as the loader of ``fmt``."""

    def deco(fn: Loader) -> Loader:
        LOADERS[fmt] = fn
        return fn

    return deco


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


def _file_named(spec: DatasetSpec, paths: Mapping[str, Path], basename: str) -> Path:
    for f in spec.files:
        if PurePosixPath(f.path).name == basename:
            return paths[f.path]
    raise ConfigError(f"dataset {spec.name!r} has format {spec.format!r}, which needs a file named "
                      f"{basename} in its files list")


def _only_file(spec: DatasetSpec, paths: Mapping[str, Path]) -> Path:
    if len(spec.files) != 1:
        raise ConfigError(f"dataset {spec.name!r} has format {spec.format!r}, which reads exactly one file, "
                          f"but {len(spec.files)} are listed")
    return paths[spec.files[0].path]


def _read_npy(source: io.BufferedIOBase | Path, label: str) -> np.ndarray:
    try:
        # allow_pickle=False: a data file must never be able to run code.
        return np.load(source, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise DataError(f"{label} is not a readable .npy file ({_one_line(e)}): {_DAMAGED}") from None


def _open_zip(path: Path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as e:
        raise DataError(f"{path} is not a readable zip file ({_one_line(e)}): {_DAMAGED}") from None


def _read_member(zf: zipfile.ZipFile, member: str, label: str) -> bytes:
    try:
        return zf.read(member)
    except KeyError:
        raise DataError(f"{label} has no member {member}: {_DAMAGED}") from None
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        raise DataError(f"{label}: member {member} is unreadable ({_one_line(e)}): {_DAMAGED}") from None


@register("npy")
def load_npy(spec: DatasetSpec, paths: Mapping[str, Path]) -> Loaded:
    """Reads ``X.npy`` (rows x features) and ``y.npy`` (rows), as the authors stored them."""
    x_path = _file_named(spec, paths, "X.npy")
    y_path = _file_named(spec, paths, "y.npy")
    return Loaded(_read_npy(x_path, str(x_path)), _read_npy(y_path, str(y_path)), str(x_path), str(y_path))


_INDOORLOC_X = "Indoorloc/X.npy"
# y1 is LONGITUDE, the target of the paper (the authors' load_data(task=1)).
_INDOORLOC_Y = "Indoorloc/y1.npy"


@register("indoorloc_zip")
def load_indoorloc_zip(spec: DatasetSpec, paths: Mapping[str, Path]) -> Loaded:
    """Reads the WAP features and LONGITUDE from the authors' ``Indoorloc.zip``.

    The members are read into memory: the zip is 2 MB but unpacks to 126 MB
    of mostly unused CSV, so unpacking it to disk buys nothing.
    """
    path = _only_file(spec, paths)
    with _open_zip(path) as zf:
        x = _read_npy(io.BytesIO(_read_member(zf, _INDOORLOC_X, str(path))), f"{path}:{_INDOORLOC_X}")
        y = _read_npy(io.BytesIO(_read_member(zf, _INDOORLOC_Y, str(path))), f"{path}:{_INDOORLOC_Y}")
    return Loaded(x, y, f"{path}:{_INDOORLOC_X}", f"{path}:{_INDOORLOC_Y}")


_CTSCAN_CSV = "slice_localization_data.csv"


def _ctscan_csv_bytes(path: Path) -> tuple[bytes, str]:
    with _open_zip(path) as zf:
        names = zf.namelist()
        for name in names:
            if PurePosixPath(name).name == _CTSCAN_CSV:
                return _read_member(zf, name, str(path)), f"{path}:{name}"
        # UCI has shipped this set both as the bare csv in a zip and as a zip
        # inside its download zip; accept either packaging.
        for name in names:
            if name.lower().endswith(".zip"):
                inner = io.BytesIO(_read_member(zf, name, str(path)))
                try:
                    with zipfile.ZipFile(inner) as izf:
                        for iname in izf.namelist():
                            if PurePosixPath(iname).name == _CTSCAN_CSV:
                                return izf.read(iname), f"{path}:{name}:{iname}"
                except (zipfile.BadZipFile, OSError, EOFError) as e:
                    raise DataError(f"{path}: inner zip {name} is unreadable ({_one_line(e)}): "
                                    f"{_DAMAGED}") from None
    raise DataError(f"{path} has no {_CTSCAN_CSV}: {_DAMAGED}")


@register("ctscan_csv")
def load_ctscan_csv(spec: DatasetSpec, paths: Mapping[str, Path]) -> Loaded:
    """Reads UCI's CT-slice csv: drops ``patientId``, takes ``reference`` as the target.

    Accepts UCI's download zip (csv directly inside, or inside a nested zip)
    or the bare csv.
    """
    import pandas as pd

    path = _only_file(spec, paths)
    if path.suffix.lower() == ".csv":
        raw, label = path.read_bytes(), str(path)
    else:
        raw, label = _ctscan_csv_bytes(path)
    try:
        df = pd.read_csv(io.BytesIO(raw))
    except (ValueError, pd.errors.ParserError) as e:
        raise DataError(f"{label} is not a readable csv ({_one_line(e)}): {_DAMAGED}") from None
    lacking = [c for c in ("patientId", "reference") if c not in df.columns]
    if lacking:
        raise DataError(f"{label} has no column {', '.join(lacking)}: {_DAMAGED}")
    try:
        x = df.drop(columns=["patientId", "reference"]).to_numpy(dtype=np.float64)
        y = df["reference"].to_numpy(dtype=np.float64)
    except (ValueError, TypeError) as e:
        raise DataError(f"{label} has non-numeric values ({_one_line(e)}): {_DAMAGED}") from None
    return Loaded(x, y, label, f"{label} (column reference)")


def check_loaded(spec: DatasetSpec, loaded: Loaded) -> tuple[np.ndarray, np.ndarray]:
    expected_x = (spec.n_rows, spec.n_features)
    try:
        x = np.asarray(loaded.X, dtype=np.float64)
        y = np.asarray(loaded.y, dtype=np.float64)
    except (ValueError, TypeError) as e:
        raise DataError(f"{loaded.x_from} or {loaded.y_from} holds non-numeric data "
                        f"({_one_line(e)}): {_DAMAGED}") from None
    if x.shape != expected_x:
        raise DataError(f"{loaded.x_from} has shape {x.shape}, expected {expected_x}: {_DAMAGED}")
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.shape != (spec.n_rows,):
        raise DataError(f"{loaded.y_from} has shape {y.shape}, expected ({spec.n_rows},): {_DAMAGED}")
    for arr, label in ((x, loaded.x_from), (y, loaded.y_from)):
        bad = int(arr.size - np.count_nonzero(np.isfinite(arr)))
        if bad:
            raise DataError(f"{label} has {bad} non-finite values (NaN or inf): {_DAMAGED}")
    return x, y


def loader_for(spec: DatasetSpec) -> Loader:
    try:
        return LOADERS[spec.format]
    except KeyError:
        raise ConfigError(f"dataset {spec.name!r} has unknown format {spec.format!r}: "
                          f"known formats are {', '.join(sorted(LOADERS))}") from None


def check_candidate(spec: DatasetSpec, data_dir: str | Path, overrides: Mapping[str, Path]) -> None:
    """Loads a dataset with some files replaced by candidate copies, checking shape and values.

    Used to accept a freshly fetched file that has no pinned checksum. When
    another file of the dataset is not installed yet, nothing can be checked
    and the call returns; :func:`load_dataset` checks again at load time.

    Raises:
        DataError: If the candidate does not load, or has the wrong shape or
            non-finite values.
    """
    paths = {f.path: Path(overrides.get(f.path, spec.file_path(f, data_dir))) for f in spec.files}
    if not all(p.is_file() for p in paths.values()):
        return
    check_loaded(spec, loader_for(spec)(spec, paths))
