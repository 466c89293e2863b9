"""The data-scarce setting (Kang & Kang 2024): a few real training rows, with their true labels.

``real_fraction=p`` takes the first ``ceil(p * n_train)`` rows of each seed's training split
(``real_rows=n``: the first n), deterministically: the split is already a seeded shuffle, so
"the first rows" is a random sample that every method of that seed shares. ``p = 0`` (the
default) is the paper's data-free protocol; nothing about such a cell changes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from dfkd.errors import ConfigError


def real_row_count(fraction, rows, n_train: int) -> int:
    """How many real rows a cell gets from ``real_fraction`` or ``real_rows`` (0: data-free).

    Raises:
        ConfigError: a fraction outside [0, 1], a negative or non-integer count, a count above the
            training split, or both given.
    """
    given_fraction = fraction not in (None, 0, 0.0)
    if given_fraction and rows not in (None, 0):
        raise ConfigError(f"give real_fraction or real_rows, not both (got real_fraction={fraction}, "
                          f"real_rows={rows}): set the other to null")
    if rows not in (None, 0):
        if isinstance(rows, bool) or not isinstance(rows, int) or rows < 0:
            raise ConfigError(f"real_rows must be a whole number of rows >= 0, got {rows!r}")
        if rows > n_train:
            raise ConfigError(f"real_rows={rows} is more than the {n_train} rows of the training split: "
                              f"use real_rows<={n_train} or raise n_train")
        return int(rows)
    if fraction is None:
        return 0
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 <= fraction <= 1:
        raise ConfigError(f"real_fraction must be a number in [0, 1] (0 = data-free), got {fraction!r}")
    return int(math.ceil(fraction * n_train - 1e-9))


@dataclass
class RealRows:
    """Each replica's real rows: ``x (R, n, *input_shape)`` and true labels ``y (R, n)``."""

    x: torch.Tensor
    y: torch.Tensor

    @property
    def n(self) -> int:
        return int(self.x.shape[1])

    @classmethod
    def from_splits(cls, splits, n: int, input_shape, device="cpu") -> "RealRows":
        """The first ``n`` training rows of every seed's split."""
        if n < 1:
            raise ValueError("RealRows needs at least one row")
        short = min(len(s.y_train) for s in splits)
        if n > short:
            raise ConfigError(f"{n} real rows asked, the training split has {short}: lower real_fraction or real_rows")
        x = torch.stack([torch.as_tensor(s.X_train[:n], dtype=torch.float32) for s in splits])
        y = torch.stack([torch.as_tensor(s.y_train[:n], dtype=torch.float32) for s in splits])
        return cls(x.reshape(len(splits), n, *input_shape).to(device), y.to(device))

    def draw(self, gens: list[torch.Generator], m: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``m`` rows per replica drawn uniformly with replacement, replica r's indices from ``gens[r]``:
        ``(x (R, m, ...), y (R, m))``."""
        idx = torch.stack([torch.randint(0, self.n, (m,), generator=g) for g in gens]).to(self.x.device)
        x = torch.gather(self.x.flatten(2), 1, idx[:, :, None].expand(-1, -1, self.x[0, 0].numel()))
        return x.reshape(len(gens), m, *self.x.shape[2:]), torch.gather(self.y, 1, idx)

