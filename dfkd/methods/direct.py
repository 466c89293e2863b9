"""Direct optimization of the synthetic inputs (Zhou & Chiam 2023, eqs. 5 and 8, Algorithm 2)."""

from __future__ import annotations

import torch

from dfkd.core import rng
from dfkd.core.state import generator_states, set_generator_states
from dfkd.core.optim import fresh_rmsprop_steps
from dfkd.methods.base import Method
from dfkd.methods.objective import objective_from


class Direct(Method):
    """Start from the base distribution and take ``steps`` steps of a fresh RMSprop on the objective.

    Tabular (paper eq. 5): ``x_g = argmin_x mean(-(T(x) - S(x))^2 + gamma S(x)^2)`` from
    x ~ N(0, I), solved approximately by tau_max = 2 RMSprop steps (lr 0.1, weight
    decay beta = 1e-5), a new optimizer for every batch (see
    :func:`dfkd.core.optim.fresh_rmsprop_steps`).

    MNIST (paper eq. 8): the ``objective`` mapping of ``conf/method/direct_mnist.yaml``
    (``-eps logcosh(T - S) + beta |x|_1 + gamma (T - y_rand)^2``), 20 steps at lr 1e-3,
    from per-pixel Gaussian images; after every step the images are clipped back
    into the valid pixel range (the context's bounds). y_rand is drawn once per
    batch and held fixed during its steps.

    Args:
        lr: RMSprop learning rate on x.
        steps: tau_max, the number of RMSprop steps per batch.
        beta: RMSprop weight decay on x (the L2 pull of eq. 5; 0 for eq. 8).
        gamma: weight of S(x)^2 in the tabular objective (eq. 5); omit when ``objective`` is given.
        objective: the objective's terms (:class:`dfkd.methods.objective.Objective`), e.g. eq. 8's.
    """

    name = "direct"
    needs_gradients = True

    def __init__(self, lr: float = 0.1, steps: int = 2, beta: float = 1e-5, gamma: float | None = None,
                 objective: dict | None = None):
        self.lr, self.steps, self.beta = float(lr), int(steps), float(beta)
        self.objective = objective_from(objective, gamma)

    def bind(self, teacher, student, seeds, device="cpu", context=None) -> None:
        super().bind(teacher, student, seeds, device, context)
        self.targets = rng.generators(self.seeds, "method_target")

    def state_dict(self) -> dict:
        """The y_rand streams (the starting points come from the engine's noise streams)."""
        return {"targets": generator_states(self.targets)}

    def load_state_dict(self, state: dict) -> None:
        set_generator_states(self.targets, state["targets"])

    def sample(self, m: int) -> torch.Tensor:
        return self.optimize(self.base(m))

    def optimize(self, x: torch.Tensor) -> torch.Tensor:
        """The ``steps`` RMSprop steps on the objective from starting points ``x (R, n, *input_shape)``
        (:meth:`sample` starts from the base distribution; Kang & Kang's ABM starts from real rows)."""
        y = self.objective.draw_target(self.targets, x.shape[1], self.device)
        grad = lambda x: self.objective.input_grad(self.teacher, self.student, x, y)  # noqa: E731
        project = self.context.clip if self.context.bounds is not None else None
        return fresh_rmsprop_steps(x, grad, self.steps, self.lr, self.beta, project=project)
