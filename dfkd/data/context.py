"""What a method knows about a dataset's inputs besides the networks: their shape, base distribution and box."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from dfkd.data.sampler import NormalSampler, Sampler, clip_to


@dataclass
class Context:
    """What a method knows about the inputs besides the networks.

    Attributes:
        input_shape: One input's shape: ``(d,)`` for tables, ``(1, 28, 28)`` for MNIST.
        sampler: The dataset's base distribution (:mod:`dfkd.data.sampler`).
        bounds: None or ``(lo, hi)`` tensors broadcastable to one input; synthetic
            inputs are kept inside them. Defaults to the sampler's bounds.
    """

    input_shape: tuple
    sampler: Sampler = None
    bounds: tuple | None = field(default=None)

    def __post_init__(self):
        self.input_shape = tuple(int(s) for s in self.input_shape)
        if self.sampler is None:
            self.sampler = NormalSampler(self.input_shape)
        if self.bounds is None:
            self.bounds = self.sampler.bounds

    def clip(self, x: torch.Tensor) -> torch.Tensor:
        """Keep ``x`` inside the bounds, in place (no-op without bounds)."""
        return clip_to(x, self.bounds)


def default_context(teacher) -> Context:
    """The tabular context: inputs ``(d,)`` with d = the teacher's input width, x ~ N(0, I)."""
    return Context(input_shape=tuple(getattr(teacher, "input_shape", (teacher.d_in,))))
