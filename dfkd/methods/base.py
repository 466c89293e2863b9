"""The interface every synthetic-data method answers.

A method is bound once to a stack of teachers and students, then asked for a
batch of synthetic inputs x_g per student step. Methods with state (the
generator) update it in :meth:`Method.start_epoch`.
"""

from __future__ import annotations

import torch

from dfkd.engine import rng
from dfkd.models.mlp import MLPStack


class Method:
    """Base class: subclasses implement :meth:`sample` (and optionally :meth:`start_epoch`)."""

    name = "base"

    def bind(self, teacher: MLPStack, student: MLPStack, seeds: list[int], device="cpu") -> None:
        """Attach to a stack; ``noise`` generators are shared with the engine (draw order matters)."""
        self.teacher, self.student, self.seeds = teacher, student, list(seeds)
        self.device = torch.device(device)
        self.d = teacher.d_in

    def set_noise(self, noise: list[torch.Generator]) -> None:
        """The per-replica generators this method draws its random starting points from."""
        self.noise = noise

    def start_epoch(self, epoch: int, m: int) -> None:
        """Called once per student epoch before its steps (when alpha > 0)."""

    def sample(self, m: int) -> torch.Tensor:
        """A synthetic batch ``(R, m, d)``, detached."""
        raise NotImplementedError

    def randn(self, *shape) -> torch.Tensor:
        """Standard normal draws ``(R, *shape)`` from this method's noise streams."""
        return rng.randn(self.noise, shape, self.device)
