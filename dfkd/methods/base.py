"""The interface every synthetic-data method answers.

A method is bound once to a stack of teachers and students (and the dataset's
:class:`Context`), then asked for a batch of synthetic inputs x_g per student
step. Methods with state (the generator) update it in :meth:`Method.start_epoch`.
"""

from __future__ import annotations

import torch

from dfkd.core import rng
from dfkd.errors import ConfigError
from dfkd.data.context import Context, default_context


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
