"""Plain random sampling: x ~ N(0, I), the baseline of the paper's tables."""

from __future__ import annotations

import torch

from dfkd.methods.base import Method


class Random(Method):
    """x_g ~ N(0, I) of shape (m, d). With constant alpha 0 this is the "Random Sampling" column."""

    name = "random"

    def sample(self, m: int) -> torch.Tensor:
        return self.randn(m, self.d)
