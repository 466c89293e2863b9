"""The objective that synthetic data minimises (paper eqs. 3, 5, 8 and 9), as configuration.

Minimised over x (direct optimization) or over the generator's weights, per
replica, averaged over the m rows of a batch::

    mean_rows( -disagreement * L(T(x) - S(x))      # L: squared error or Log-Cosh
               + gamma * S(x)^2                    # eqs. 3 and 5
               + target * (T(x) - y_rand)^2        # eq. 8 (gamma there), eq. 9 (1 - eps there)
               + l1 * |x|_1 )                      # eq. 8 (beta there); |x|_1 sums one input's entries

- Tabular (eqs. 3 and 5): ``disagreement=1, loss=mse, gamma=1e-5``, nothing else.
- MNIST (eq. 8): ``disagreement=eps=1e-6, loss=logcosh, l1=beta=1e-6, target=gamma=1``,
  y_rand uniform on the integers 0..9.
- eSol (eq. 9): ``disagreement=eps, loss=mse, target=1-eps`` (or 1), y_rand ~ U(0, 1) per batch.

The first term seeks inputs where student and teacher disagree; the others keep
the inputs plausible. Each method's yaml lists the terms it uses, so a new
objective is a new yaml, not new code.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from dfkd.core.losses import check_loss, loss_terms
from dfkd.errors import ConfigError

TARGETS = ("integers", "uniform")


@dataclass(frozen=True)
class Objective:
    """The terms of the synthetic-data objective; see the module docstring.

    Attributes:
        disagreement: Weight of ``-L(T - S)`` (1 in eqs. 3/5, eps in eqs. 8/9).
        loss: ``mse`` (squared difference) or ``logcosh`` for L.
        gamma: Weight of ``S(x)^2``.
        target: Weight of ``(T(x) - y_rand)^2``.
        l1: Weight of the input's L1 norm.
        y_rand: ``integers`` (uniform on y_low..y_high) or ``uniform`` (U(y_low, y_high)).
        y_low, y_high: Range of y_rand.
        y_per: ``row`` (one y_rand per synthetic input) or ``batch`` (one per batch).
    """

    disagreement: float = 1.0
    loss: str = "mse"
    gamma: float = 0.0
    target: float = 0.0
    l1: float = 0.0
    y_rand: str = "integers"
    y_low: float = 0.0
    y_high: float = 9.0
    y_per: str = "row"

    def __post_init__(self):
        check_loss(self.loss, "objective loss")
        if self.y_rand not in TARGETS:
            raise ConfigError(f"objective y_rand '{self.y_rand}' unknown: use one of {', '.join(TARGETS)}")
        if self.y_per not in ("row", "batch"):
            raise ConfigError(f"objective y_per must be 'row' or 'batch', got '{self.y_per}'")
        for key in ("disagreement", "gamma", "target", "l1", "y_low", "y_high"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ConfigError(f"objective {key} must be a finite number, got {value!r}")
        if self.y_high < self.y_low:
            raise ConfigError(f"objective y_high ({self.y_high}) is below y_low ({self.y_low})")

    @property
    def needs_target(self) -> bool:
        """Whether a y_rand must be drawn for each batch."""
        return self.target != 0

    def draw_target(self, gens: list[torch.Generator], m: int, device="cpu") -> torch.Tensor | None:
        """y_rand for a batch of m rows per replica ``(R, m)`` (None when the target term is off)."""
        if not self.needs_target:
            return None
        n = m if self.y_per == "row" else 1
        out = torch.empty(len(gens), n)
        for r, g in enumerate(gens):
            if self.y_rand == "integers":
                out[r] = torch.randint(int(self.y_low), int(self.y_high) + 1, (n,), generator=g).float()
            else:
                out[r] = torch.rand(n, generator=g) * (self.y_high - self.y_low) + self.y_low
        return out.expand(len(gens), m).to(device)

    def grads(self, t: torch.Tensor, s: torch.Tensor, y: torch.Tensor | None = None):
        """Objective value per replica ``(R,)`` (without the L1 term) and its gradients w.r.t. T and S ``(R, m)``."""
        m = t.shape[1]
        disagreement, slope, factor = loss_terms(t - s, self.loss, -self.disagreement)
        value = disagreement + self.gamma * s * s
        g_t = slope * (-factor * self.disagreement / m)
        g_s = slope * (factor * self.disagreement / m) + s * (2.0 * self.gamma / m)
        if self.needs_target:
            if y is None:
                raise ValueError("this objective has a target term: pass y (draw it with draw_target)")
            miss = t - y
            value = value + self.target * miss * miss
            g_t = g_t + miss * (2.0 * self.target / m)
        return value.mean(1), g_t, g_s

    def l1_value(self, x: torch.Tensor) -> torch.Tensor:
        """The L1 term per replica ``(R,)``: ``l1 * mean_rows |x|_1``."""
        return self.l1 * x.abs().flatten(2).sum(-1).mean(1)

    def value(self, teacher, student, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """The full objective per replica ``(R,)`` (for tests and diagnostics)."""
        value, _, _ = self.grads(teacher.predict(x), student.predict(x), y)
        return value + self.l1_value(x) if self.l1 else value

    def input_grad(self, teacher, student, x: torch.Tensor, y: torch.Tensor | None = None):
        """d objective / d x for a batch ``(R, m, *input_shape)``, through both networks."""
        t, t_cache = teacher.forward(x, keep=True)
        s, s_cache = student.forward(x, keep=True)
        _, g_t, g_s = self.grads(t.squeeze(-1), s.squeeze(-1), y)
        gx = teacher.backward(t_cache, g_t, params=False, inputs=True)[1]
        gx += student.backward(s_cache, g_s, params=False, inputs=True)[1]
        if self.l1:
            gx.add_(torch.sign(x), alpha=self.l1 / x.shape[1])
        return gx


@dataclass(frozen=True)
class Disagreement(Objective):
    """The tabular objective of eqs. 3 and 5: ``-(T - S)^2 + gamma * S^2`` with gamma = 1e-5 by default."""

    gamma: float = 1e-5


def objective_from(params: dict | None, gamma: float | None = None) -> Objective:
    """Build a method's objective from its yaml: an ``objective:`` mapping, or the tabular ``gamma``.

    Raises:
        ConfigError: unknown term names, or both forms given.
    """
    if params is None:
        return Disagreement() if gamma is None else Disagreement(gamma=float(gamma))
    if gamma is not None:
        raise ConfigError("give the objective's terms either as `objective: {...}` or as `gamma`, not both")
    if not isinstance(params, dict):
        raise ConfigError(f"objective must be a mapping of terms, got {params!r}")
    known = set(Objective.__dataclass_fields__)
    unknown = sorted(set(params) - known)
    if unknown:
        raise ConfigError(f"unknown objective term(s) {', '.join(unknown)}: use {', '.join(sorted(known))}")
    return Objective(**params)
