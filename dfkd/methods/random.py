"""Plain random sampling from the dataset's base distribution: the baseline of the paper's tables."""

from __future__ import annotations

import torch

from dfkd.methods.base import Method


class Random(Method):
    """x_g drawn from the base distribution: N(0, I) for tables (with constant alpha 0 this is
    the "Random Sampling" column of Tables 3/4), per-pixel N(mean, var) clipped to [0, 1] for
    MNIST (Table 5), the clipped and renormalised feature Gaussian for eSol (Table 6)."""

    name = "random"

    def sample(self, m: int) -> torch.Tensor:
        return self.base(m)
