"""Standardization and train/validation/test split, as in the paper's code.

SPEC section 1, "Preprocessing": X and y are standardized over ALL rows, then
``train_test_split(train_size=5000, random_state=seed)``, and the rest is split
again 10 % validation / 90 % test with the same seed. Only the seed fixes a
split; the paper's ten runs are seeds 1..10.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import numpy as np

from dfkd.errors import ConfigError


@dataclass(frozen=True, eq=False)
class Split:
    """One seed's standardized split, all arrays float32.

    X arrays have shape (rows, features); y arrays have shape (rows,).
    """

    X_train: np.ndarray
    y_train: np.ndarray
    X_val: np.ndarray
    y_val: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray


def make_split(X: np.ndarray, y: np.ndarray, seed: int, n_train: int = 5000,
               val_fraction: float = 0.1, *, standardize: bool = True, train_seed: int | None = None,
               val_seed: int | None = None) -> Split:
    """Standardizes X and y over all rows, then splits train / validation / test.

    Scaling uses scikit-learn's ``StandardScaler`` (population std; constant
    columns are centred but left unscaled). The train part is the first output
    of ``train_test_split(X, y, train_size=n_train, random_state=seed)``; the
    remainder is split by ``train_test_split(..., train_size=val_fraction,
    random_state=seed)`` into validation (first part) and test (second part),
    exactly as the authors' ``process_data`` and ``convert_to_pytorch`` do.

    A dataset may fix its split instead (the protein case study, SPEC section
    3: no scaling, ``random_state`` 0 for the training rows and 42 for the
    validation rows, whatever the run): ``standardize=False`` keeps the raw
    values and ``train_seed``/``val_seed`` replace the run seed.

    Args:
        X: Raw features, shape (n_rows, n_features).
        y: Raw target, shape (n_rows,).
        seed: The split's random state (the paper's runs use 1..10).
        n_train: Number of training rows.
        val_fraction: Fraction of the non-training rows used for validation.
        standardize: Whether to standardize X and y over all rows first.
        train_seed: Fixed random state of the train/rest split (None: ``seed``).
        val_seed: Fixed random state of the validation/test split (None: ``seed``).

    Returns:
        The split, as float32 arrays.

    Raises:
        ConfigError: If the arrays or arguments are inconsistent or out of range.
    """
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if X.ndim != 2:
        raise ConfigError(f"X must be 2-D (rows, features), got shape {X.shape}")
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.shape != (X.shape[0],):
        raise ConfigError(f"y must have shape ({X.shape[0]},) to match X {X.shape}, got {y.shape}")
    n_rows = X.shape[0]
    for label, value in (("split seed", seed), ("train_seed", train_seed), ("val_seed", val_seed)):
        if value is None and label != "split seed":
            continue
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not 0 <= value < 2**32:
            raise ConfigError(f"{label} must be an integer in [0, 2**32), got {value!r}")
    if isinstance(n_train, bool) or not isinstance(n_train, numbers.Integral) or not 0 < n_train < n_rows:
        raise ConfigError(f"n_train must be an integer with 0 < n_train < {n_rows} (the dataset's rows), "
                          f"got {n_train!r}")
    if isinstance(val_fraction, bool) or not isinstance(val_fraction, numbers.Real) \
            or not 0.0 < float(val_fraction) < 1.0:
        raise ConfigError(f"val_fraction must be a number strictly between 0 and 1, got {val_fraction!r}")
    rest = n_rows - int(n_train)
    n_val = int(np.floor(float(val_fraction) * rest))
    if n_val < 1 or rest - n_val < 1:
        raise ConfigError(f"{rest} rows remain after {n_train} training rows: too few for val_fraction "
                          f"{val_fraction} to leave both a validation and a test row; lower n_train")

    # scikit-learn is imported here, not at the top: it is 1-1.6 s of every command's start (the one-line errors
    # for bad settings come before any split is made)
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    if standardize:
        # Whole-data scaling, as the published tables used (SPEC section 1).
        y_s = StandardScaler().fit_transform(y.reshape(-1, 1)).ravel()
        X_s = StandardScaler().fit_transform(X)
    else:
        X_s, y_s = X, y
    seed = int(seed)
    X_train, X_rest, y_train, y_rest = train_test_split(
        X_s, y_s, train_size=int(n_train), random_state=seed if train_seed is None else int(train_seed))
    X_val, X_test, y_val, y_test = train_test_split(
        X_rest, y_rest, train_size=float(val_fraction), random_state=seed if val_seed is None else int(val_seed))
    return Split(_f32(X_train), _f32(y_train), _f32(X_val), _f32(y_val), _f32(X_test), _f32(y_test))


def _f32(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float32)
