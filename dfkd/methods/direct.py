"""Direct optimization of the synthetic inputs (Zhou & Chiam 2023, eq. 5, Algorithm 2)."""

from __future__ import annotations

import torch

from dfkd.engine.optim import fresh_rmsprop_steps
from dfkd.methods.base import Method
from dfkd.methods.objective import Disagreement


class Direct(Method):
    """Start from x ~ N(0, I) and take ``steps`` steps of a fresh RMSprop on the objective.

    Paper eq. 5: ``x_g = argmin_x mean(-(T(x) - S(x))^2 + gamma S(x)^2)``, solved
    approximately by tau_max = 2 RMSprop steps (lr 0.1, weight decay beta = 1e-5),
    a new optimizer for every batch (see :func:`dfkd.engine.optim.fresh_rmsprop_steps`).
    """

    name = "direct"

    def __init__(self, lr: float = 0.1, steps: int = 2, beta: float = 1e-5, gamma: float = 1e-5):
        self.lr, self.steps, self.beta = float(lr), int(steps), float(beta)
        self.objective = Disagreement(gamma=float(gamma))

    def sample(self, m: int) -> torch.Tensor:
        x = self.randn(m, self.d)
        grad = lambda x: self.objective.input_grad(self.teacher, self.student, x)  # noqa: E731
        return fresh_rmsprop_steps(x, grad, self.steps, self.lr, self.beta)
