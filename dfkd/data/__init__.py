"""Data layer: dataset specs, install/verify, loaders and the paper's split.

Typical use::

    from dfkd.data import load_spec, load_dataset, make_split
    X, y = load_dataset(load_spec("pole"), data_dir="data")
    split = make_split(X, y, seed=1)

Nothing here depends on Hydra; entry points pass plain values.
"""

from dfkd.data.fetch import ensure_dataset
from dfkd.data.tabular import load_dataset
from dfkd.data.registry import DatasetSpec, list_datasets, load_spec
from dfkd.data.split import Split, make_split

__all__ = [
    "DatasetSpec",
    "Split",
    "ensure_dataset",
    "list_datasets",
    "load_dataset",
    "load_spec",
    "make_split",
]
