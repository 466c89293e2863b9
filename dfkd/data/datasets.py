"""Datasets as objects: each yaml under ``conf/dataset/`` names its class in ``_target_``.

A dataset knows its files, how it is split for a run and what its synthetic inputs look
like (the :class:`~dfkd.data.context.Context`); the cell asks it through :class:`Dataset`
and never looks at its format. A new family of datasets is one class here (or anywhere
importable) and one yaml.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from dfkd.data.context import Context
from dfkd.data.registry import DatasetSpec
from dfkd.data.sampler import make_sampler
from dfkd.errors import ConfigError

_SPLIT_KEYS = ("n_train", "val_fraction", "standardize", "train_seed", "val_seed")


@runtime_checkable
class Dataset(Protocol):
    """What the cell needs of a dataset.

    Attributes:
        name: The dataset's name (records, folders, tables).
        inputs: The kind of input it holds (``table`` or ``image``); teachers and students
            declare the kinds they take, and the cell checks that they fit.
        keep_samples: Whether runs keep a batch of synthetic inputs for figures (Figures 9, 10).
    """

    name: str
    inputs: str
    keep_samples: bool

    def fingerprint(self) -> list:
        """The data files' checksums (what fixes the data's content)."""

    def teacher_split(self, n_train: int, val_fraction: float, subset: dict) -> Any:
        """The part of a teacher's cache key that the split contributes (JSON-serialisable)."""

    def cell_extra(self, subset: dict, samples: int) -> dict:
        """Extra entries of a run's config hash (empty for tables, so their hashes never changed)."""

    def load(self, seeds: list[int], n_train: int, val_fraction: float, subset: dict, data_dir, mirror):
        """``(splits, context)``: one split per seed and the synthetic inputs' context."""

    def record_extra(self, splits) -> dict:
        """Dataset-specific fields of a run's record (image counts; nothing for tables)."""


@lru_cache(maxsize=None)
def _declared_synthetic(name: str) -> dict | None:
    """The ``synthetic:`` block of ``conf/dataset/<name>.yaml`` (``{}`` when it has none; None: no such yaml), read
    once per process (every seed's config hash asks for it)."""
    from omegaconf import OmegaConf

    from dfkd.core.paths import CONF_DIR

    path = CONF_DIR / "dataset" / f"{name}.yaml"
    return (OmegaConf.to_container(OmegaConf.load(path)).get("synthetic") or {}) if path.is_file() else None


class _SpecDataset:
    """Shared by the dataset classes: the yaml's fields as a :class:`DatasetSpec`."""

    inputs = "table"
    keep_samples = False

    def __init__(self, **fields):
        self.spec = DatasetSpec.from_dict(fields)
        self.name = self.spec.name
        self.fields = fields

    def fingerprint(self) -> list:
        return sorted((f.get("path"), f.get("sha256")) for f in self.fields.get("files", []))

    def check_subset(self, subset: dict) -> None:
        if any(v is not None for v in (subset or {}).values()):
            raise ConfigError(f"subset.train/subset.test apply to image datasets only; for dataset "
                              f"{self.name} use n_train and val_fraction")

    def cell_extra(self, subset: dict, samples: int) -> dict:
        return self.synthetic_extra()

    def synthetic_extra(self, skip=()) -> dict:
        """The ``synthetic:`` block as an entry of a cell's config hash, when it is not the block the dataset's own
        yaml (``conf/dataset/<name>.yaml``) declares: a command-line override or a preset changed how synthetic
        inputs are drawn, so those cells must never pass for (or skip) the yaml's. ``{}`` otherwise, so the hash of
        every record made with the yaml's block stays as it was (and for a dataset that has no yaml there).
        Keys in ``skip`` are hashed their own way by the caller."""
        declared = _declared_synthetic(self.name)
        if declared is None:
            return {}
        current = self.spec.extra.get("synthetic") or {}
        current, declared = ({k: v for k, v in block.items() if k not in skip} for block in (current, declared))
        return {} if current == declared else {"synthetic": current}

    def record_extra(self, splits) -> dict:
        return {}


class TabularDataset(_SpecDataset):
    """A table of rows and a target (``format`` names its loader in :mod:`dfkd.data.loaders`).

    Split per seed (``n_train`` rows, then validation and test), or by the yaml's own
    ``split:`` block (eSol: one fixed, unscaled split). The base distribution of synthetic
    rows comes from its ``synthetic:`` block (:meth:`context`).
    """

    def split_options(self, n_train: int, val_fraction: float) -> dict:
        """The global ``n_train``/``val_fraction``, overridden by the yaml's own ``split:`` block."""
        own = self.fields.get("split")
        if own is None:
            return {"n_train": n_train, "val_fraction": val_fraction}
        if not isinstance(own, dict) or set(own) - set(_SPLIT_KEYS):
            raise ConfigError(f"dataset {self.name}: split must be a mapping of {', '.join(_SPLIT_KEYS)}, got {own!r}")
        return {"n_train": n_train, "val_fraction": val_fraction, **own}

    def teacher_split(self, n_train: int, val_fraction: float, subset: dict):
        # a dataset's own split block (eSol) enters the key only when present, so tabular keys stay as they were
        if "split" not in self.fields:
            return [n_train, val_fraction]
        return self.split_options(n_train, val_fraction)

    def load(self, seeds, n_train, val_fraction, subset, data_dir, mirror):
        from dfkd.data.split import make_split
        from dfkd.data.tabular import load_dataset

        self.check_subset(subset)
        X, y = load_dataset(self.spec, data_dir=data_dir, mirror=mirror)
        options = self.split_options(n_train, val_fraction)
        splits = [make_split(X, y, seed, **options) for seed in seeds]
        return splits, self.context(splits)

    def context(self, splits) -> Context:
        """The base distribution of synthetic rows, from the yaml's ``synthetic:`` block.

        ``kind: normal`` (the default) is N(0, I). ``kind: simplex`` (eSol) uses the training
        rows' per-feature mean and population std. ``bounds: train_range`` sets the search box
        (method=de) to the training rows' per-feature min and max, ``margin`` added to the max;
        without it the box is the sampler's own (simplex: [0, 1]; normal: none). Statistics come
        from the training rows, so they need one split shared by every seed.
        """
        synthetic = dict(self.spec.extra.get("synthetic") or {"kind": "normal"})
        kind = synthetic.pop("kind", "normal")
        bounds_rule, margin = synthetic.pop("bounds", None), synthetic.pop("margin", 0.0)
        shape = (int(self.spec.n_features),)
        X = np.asarray(splits[0].X_train, dtype=np.float64)
        needs_rows = kind == "simplex" or bounds_rule is not None
        if needs_rows and any(s.X_train is not splits[0].X_train and not np.array_equal(X, s.X_train)
                              for s in splits[1:]):
            raise ConfigError(f"dataset {self.name}: synthetic statistics come from the training rows, which differ "
                              f"between seeds: give the dataset a fixed split (split: {{train_seed: ...}})")
        stats = {"mean": X.mean(0), "std": X.std(0)} if kind == "simplex" else {}
        sampler = make_sampler(kind, shape, **stats, **synthetic)
        bounds = None
        if bounds_rule is not None:
            if bounds_rule != "train_range":
                raise ConfigError(f"synthetic.bounds must be train_range (or absent), got {bounds_rule!r}")
            try:
                margin = float(margin)
            except (TypeError, ValueError):
                raise ConfigError(f"synthetic.margin must be a number >= 0, got {margin!r}") from None
            if not margin >= 0:
                raise ConfigError(f"synthetic.margin must be a number >= 0, got {margin}")
            bounds = (torch.as_tensor(X.min(0), dtype=torch.float32),
                      torch.as_tensor(X.max(0) + margin, dtype=torch.float32))
        return Context(shape, sampler, bounds)


class ImageDataset(_SpecDataset):
    """Images with a fixed official split (MNIST): every seed shares one split, synthetic images are
    per-pixel Gaussian with the training images' statistics, clipped to [0, 1]."""

    inputs = "image"
    keep_samples = True

    def check_subset(self, subset: dict) -> None:
        pass  # fewer images for quick runs and tests

    def teacher_split(self, n_train: int, val_fraction: float, subset: dict):
        return [self.fields.get("split"), (subset or {}).get("train")]

    def cell_extra(self, subset: dict, samples: int) -> dict:
        spread = (self.spec.extra.get("synthetic") or {}).get("spread", "std")
        # spread enters the hash only off its default, so the records made before it existed keep theirs
        return {"subset": subset, "samples": samples, **({"spread": spread} if spread != "std" else {}),
                **self.synthetic_extra(skip=("spread",))}

    @property
    def input_shape(self) -> tuple:
        return tuple(int(v) for v in self.spec.extra.get("input_shape", (1, 28, 28)))

    def load(self, seeds, n_train, val_fraction, subset, data_dir, mirror):
        from dfkd.data.images import image_split, load_mnist, pixel_stats

        subset = subset or {}
        data = load_mnist(self.spec, data_dir=data_dir, mirror=mirror)
        sp = dict(self.spec.extra.get("split") or {})
        split = image_split(data, n_val=int(sp.get("n_val", 5000)), val_seed=int(sp.get("val_seed", 0)),
                            n_train=subset.get("train"), n_test=subset.get("test"))
        synthetic = dict(self.spec.extra.get("synthetic") or {"kind": "pixel"})
        kind = synthetic.pop("kind", "pixel")
        mean, var = pixel_stats(data.train_images)
        sampler = make_sampler(kind, self.input_shape, mean=mean, var=var, **synthetic)
        return [split] * len(seeds), Context(self.input_shape, sampler)

    def record_extra(self, splits) -> dict:
        split = splits[0]
        return {"n_train_images": int(split.X_train.shape[0]), "n_val_images": int(split.X_val.shape[0]),
                "n_test_images": int(split.X_test.shape[0])}
