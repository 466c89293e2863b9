"""MNIST: the four IDX files, the fixed split and the per-pixel statistics.

Pixels are scaled to [0, 1] and the target is the digit as a float (paper
section 3.5). The split is MNIST's own: 60000 training images (of which a fixed
validation part, our choice: ``n_val`` images drawn with ``val_seed``, held out
from the teacher and used to pick best checkpoints) and the 10000 test images.
Every run shares it, so the :class:`~dfkd.data.split.Split` objects handed to
the engine share their arrays (the engine then stacks them without copies).
"""

from __future__ import annotations

import gzip
import struct
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from dfkd.data.fetch import ensure_dataset
from dfkd.data.registry import DatasetSpec
from dfkd.data.split import Split
from dfkd.errors import ConfigError, DataError

_DAMAGED = "the file is damaged; delete it and run `make data`"
_FILES = {
    "train_images": "train-images-idx3-ubyte.gz", "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz", "test_labels": "t10k-labels-idx1-ubyte.gz",
}


@dataclass(frozen=True, eq=False)
class ImageData:
    """Raw MNIST: uint8 images ``(n, 28, 28)`` and uint8 labels ``(n,)``."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray


def read_idx(path: str | Path) -> np.ndarray:
    """Read one IDX file (gzip-compressed or not) into a uint8 array of the shape its header gives.

    Raises:
        DataError: not an unsigned-byte IDX file, or truncated.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            raw = fh.read()
    except (OSError, EOFError) as exc:
        raise DataError(f"{path} is unreadable ({' '.join(str(exc).split())}): {_DAMAGED}") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DataError(f"{path} is not an unsigned-byte IDX file: {_DAMAGED}")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path} has a truncated IDX header: {_DAMAGED}")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    if len(raw) - header != int(np.prod(shape)):
        raise DataError(f"{path} holds {len(raw) - header} bytes of data, its header says {int(np.prod(shape))}: "
                        f"{_DAMAGED}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def _file(spec: DatasetSpec, data_dir, basename: str) -> Path:
    for f in spec.files:
        if PurePosixPath(f.path).name == basename:
            return spec.file_path(f, data_dir)
    raise ConfigError(f"dataset {spec.name!r} (format {spec.format!r}) lists no file named {basename}")


def load_mnist(spec: DatasetSpec, data_dir="data", mirror=None, *, allow_download: bool = False) -> ImageData:
    """Install (from a mirror, or the URLs when allowed), verify and read MNIST's four IDX files.

    Raises:
        DataMissingError: a file is absent and cannot be installed.
        DataError: a file fails its checksum or its shapes are wrong.
    """
    ensure_dataset(spec, data_dir, mirror, allow_download=allow_download)
    arrays = {key: read_idx(_file(spec, data_dir, name)) for key, name in _FILES.items()}
    n_train, n_test = int(spec.extra.get("n_train_images", 60000)), int(spec.extra.get("n_test_images", 10000))
    side = tuple(spec.extra.get("input_shape", (1, 28, 28)))[1:]
    expect = {"train_images": (n_train,) + side, "train_labels": (n_train,),
              "test_images": (n_test,) + side, "test_labels": (n_test,)}
    for key, shape in expect.items():
        if arrays[key].shape != shape:
            raise DataError(f"{_file(spec, data_dir, _FILES[key])} has shape {arrays[key].shape}, expected {shape}: "
                            f"{_DAMAGED}")
    if spec.n_rows != n_train + n_test or spec.n_features != int(np.prod(side)):
        raise ConfigError(f"dataset {spec.name!r}: n_rows/n_features ({spec.n_rows}, {spec.n_features}) disagree "
                          f"with {n_train}+{n_test} images of {side}")
    for key in ("train_labels", "test_labels"):
        if arrays[key].max(initial=0) > 9:
            raise DataError(f"{_file(spec, data_dir, _FILES[key])} has labels above 9: {_DAMAGED}")
    return ImageData(**arrays)


def pixel_stats(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel mean and (population) variance of uint8 images scaled to [0, 1], float32 ``(H, W)``.

    Accumulated in float64; the authors' ``pixel_stats/x_var.npy`` used float32 and
    agrees to a relative 1e-4.
    """
    x = images.astype(np.float64) / 255.0
    return x.mean(0).astype(np.float32), x.var(0).astype(np.float32)


def _pixels(images: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray((images.astype(np.float32) / 255.0)[:, None])


def image_split(data: ImageData, n_val: int = 5000, val_seed: int = 0, n_train: int | None = None,
                n_test: int | None = None) -> Split:
    """The fixed MNIST split as float32 arrays: X ``(n, 1, 28, 28)`` in [0, 1], y the digit.

    ``n_val`` training images, chosen by a permutation seeded with ``val_seed``, form
    the validation set; the first ``n_train`` of the remaining ones (all by default)
    train the teacher; the first ``n_test`` test images (all by default) are the test set.

    Raises:
        ConfigError: sizes out of range.
    """
    total = data.train_images.shape[0]
    n_val = int(n_val)
    if not 0 < n_val < total:
        raise ConfigError(f"n_val must be in 1..{total - 1}, got {n_val}")
    rest = total - n_val
    n_train = rest if n_train is None else int(n_train)
    if not 0 < n_train <= rest:
        raise ConfigError(f"n_train must be in 1..{rest} for MNIST ({total} training images less {n_val} for "
                          f"validation), got {n_train}")
    n_test = data.test_images.shape[0] if n_test is None else int(n_test)
    if not 0 < n_test <= data.test_images.shape[0]:
        raise ConfigError(f"n_test must be in 1..{data.test_images.shape[0]}, got {n_test}")
    perm = np.random.default_rng(int(val_seed)).permutation(total)
    val_idx, train_idx = np.sort(perm[:n_val]), np.sort(perm[n_val:])[:n_train]
    labels = data.train_labels.astype(np.float32)
    return Split(X_train=_pixels(data.train_images[train_idx]), y_train=labels[train_idx],
                 X_val=_pixels(data.train_images[val_idx]), y_val=labels[val_idx],
                 X_test=_pixels(data.test_images[:n_test]), y_test=data.test_labels[:n_test].astype(np.float32))
