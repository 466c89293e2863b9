"""The interface every synthetic-data method answers.

A method is bound once to a stack of teachers and students (and the dataset's
:class:`Context`), then asked for a batch of synthetic inputs x_g per student
step. Methods with state (the generator) update it in :meth:`Method.start_epoch`.
"""

from __future__ import annotations

import torch

from dfkd.core import rng
from dfkd.core.state import generator_states, set_generator_states
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
    #: Whether the method draws its starting points from :meth:`base` (so that ``start`` can mix real rows in).
    draws_base = True
    #: Fraction of :meth:`base`'s rows taken from the real rows (data-scarce setting; 0 = all from the base
    #: distribution). Set from the method yaml's ``start:`` by :func:`dfkd.settings.build_method`.
    start = 0.0
    #: The real rows (:class:`dfkd.data.real.RealRows`) when the cell has some, else None.
    real = None
    #: A method that answers :meth:`student_gradient` instead of :meth:`sample`: it gives the student's whole
    #: loss term (several kinds of rows, input-gradient matching), not just rows for the engine to label.
    owns_loss = False

    def set_real(self, real) -> None:
        """The cell's real rows (or None), given before :meth:`bind`."""
        self.real = real

    def bind(self, teacher, student, seeds: list[int], device="cpu", context: Context | None = None) -> None:
        """Attach to a stack (and the dataset's context; default: tabular N(0, I) over ``(teacher.d_in,)``)."""
        if self.start:
            if not self.draws_base:
                raise ConfigError(f"method '{self.name}' does not start from base points, so start={self.start} "
                                  f"has no effect: remove method.start")
            if self.real is None:
                raise ConfigError(f"method '{self.name}' starts from real rows (start={self.start}) but the cell has "
                                  f"none: set real_fraction (e.g. real_fraction=0.1) or real_rows")
        if self.needs_gradients and not getattr(teacher, "differentiable", True):
            raise ConfigError(f"method '{self.name}' needs the teacher's gradients, but this teacher is a black box: "
                              f"use method=de (differential evolution) or method=random")
        self.teacher, self.student, self.seeds = teacher, student, list(seeds)
        self.device = torch.device(device)
        self.context = context if context is not None else default_context(teacher)
        self.input_shape = self.context.input_shape
        self.d = int(torch.Size(self.input_shape).numel())
        self.start_rows = rng.generators(self.seeds, "real_start") if self.start else None

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

    def base_state(self) -> dict:
        """What :meth:`base` itself changes (the real-row start streams when ``start > 0``); saved by the engine
        beside :meth:`state_dict`, so subclasses need not know about it."""
        return {"start_rows": generator_states(self.start_rows)} if self.start_rows else {}

    def load_base_state(self, state: dict) -> None:
        if bool(self.start_rows) != bool(state):
            raise ValueError("the checkpoint's real-row start streams do not fit this method")
        if self.start_rows:
            set_generator_states(self.start_rows, state["start_rows"])

    def start_epoch(self, epoch: int, m: int) -> None:
        """Called once per student epoch before its steps (when alpha > 0)."""

    def sample(self, m: int) -> torch.Tensor:
        """A synthetic batch ``(R, m, *input_shape)``, detached."""
        raise NotImplementedError

    def base(self, m: int) -> torch.Tensor:
        """``m`` draws per replica from the dataset's base distribution, from this method's noise streams.

        With ``start > 0`` the first ``round(start * m)`` of them are replaced by real rows drawn with
        replacement (their own index streams), so any method that starts from base points starts there
        from real data instead (e.g. direct optimization seeded from real rows)."""
        x = self.context.sampler(self.noise, m, self.device)
        k = int(round(self.start * m)) if self.start else 0
        if k:
            x[:, :k] = self.real.draw(self.start_rows, k)[0].to(x.device)
        return x

    def student_gradient(self, m: int, weight: float):
        """For methods with ``owns_loss``: this step's loss term ``weight * L`` on the student, as
        ``(grad (R, P) laid out like student.flat, L per replica (R,))``. ``m`` is the engine's batch size."""
        raise NotImplementedError

    def randn(self, *shape) -> torch.Tensor:
        """Standard normal draws ``(R, *shape)`` from this method's noise streams."""
        return rng.randn(self.noise, shape, self.device)
