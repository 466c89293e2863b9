"""The interface every synthetic-data method answers.

A method is bound once to a stack of teachers and students (and the dataset's
:class:`Context`), then asked for a batch of synthetic inputs x_g per student
step. Methods with state (the generator) update it in :meth:`Method.start_epoch`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from dfkd.engine import rng
from dfkd.errors import ConfigError
from dfkd.methods.sampler import NormalSampler, Sampler, clip_to


@dataclass
class Context:
    """What a method knows about the inputs besides the networks.

    Attributes:
        input_shape: One input's shape: ``(d,)`` for tables, ``(1, 28, 28)`` for MNIST.
        sampler: The dataset's base distribution (:mod:`dfkd.methods.sampler`).
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


class Method:
    """Base class: subclasses implement :meth:`sample` (and optionally :meth:`start_epoch`).

    ``needs_gradients`` marks methods that differentiate through the teacher;
    binding one to a teacher with ``differentiable = False`` is a ConfigError.

    A method that keeps state across steps (its own random streams, a network, counters)
    also implements :meth:`state_dict` and :meth:`load_state_dict`, so that a checkpointed
    stack resumes exactly (:mod:`dfkd.engine.checkpoint`). The noise streams of
    :meth:`set_noise` belong to the engine, which saves them itself.
    """

    name = "base"
    needs_gradients = False

    def bind(self, teacher, student, seeds: list[int], device="cpu", context: Context | None = None) -> None:
        """Attach to a stack (and the dataset's context; default: tabular N(0, I) over ``(teacher.d_in,)``)."""
        if self.needs_gradients and not getattr(teacher, "differentiable", True):
            raise ConfigError(f"method '{self.name}' needs the teacher's gradients, but this teacher is a black box: "
                              f"use method=de (differential evolution) or method=random")
        self.teacher, self.student, self.seeds = teacher, student, list(seeds)
        self.device = torch.device(device)
        self.context = context if context is not None else default_context(teacher)
        self.input_shape = self.context.input_shape
        self.d = int(torch.Size(self.input_shape).numel())

    def set_noise(self, noise: list[torch.Generator]) -> None:
        """The per-replica generators this method draws its random starting points from."""
        self.noise = noise

    def state_dict(self) -> dict:
        """Everything this bound method changes while it runs, as tensors, numbers, strings, lists and dicts
        (no objects): what a checkpoint must hold to continue it exactly. Stateless methods: ``{}``."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict`'s output into a method bound to the same stack.

        Raises:
            ValueError (or another exception) if ``state`` does not fit; the caller then starts over.
        """
        if state:
            raise ValueError(f"method {self.name} keeps no state, the checkpoint holds {sorted(state)}")

    def start_epoch(self, epoch: int, m: int) -> None:
        """Called once per student epoch before its steps (when alpha > 0)."""

    def sample(self, m: int) -> torch.Tensor:
        """A synthetic batch ``(R, m, *input_shape)``, detached."""
        raise NotImplementedError

    def base(self, m: int) -> torch.Tensor:
        """``m`` draws per replica from the dataset's base distribution, from this method's noise streams."""
        return self.context.sampler(self.noise, m, self.device)

    def randn(self, *shape) -> torch.Tensor:
        """Standard normal draws ``(R, *shape)`` from this method's noise streams."""
        return rng.randn(self.noise, shape, self.device)
