"""An adversarially trained generator (Kang & Kang 2021; paper eq. 3)."""

from __future__ import annotations

import torch

from dfkd.engine import rng
from dfkd.engine.optim import RMSpropStack
from dfkd.methods.base import Method
from dfkd.methods.objective import Disagreement
from dfkd.models.mlp import MLPStack


class Generator(Method):
    """G = Linear(latent, hidden) -> tanh -> Linear(hidden, d), z ~ N(0, I).

    Once per epoch (``rounds`` = n_g = 1 in the paper) G takes an RMSprop step on
    ``mean(-(T(x) - S(x))^2 + gamma S(x)^2) + beta * sum(x^2)`` with x = G(z) of
    the student's batch size. The L2 term is summed over all m x d entries, as
    in the authors' code, so it grows with m. Each student step then draws a
    fresh z through the current G.
    """

    name = "generator"

    def __init__(self, latent: int = 50, hidden: int = 500, lr: float = 1e-3, weight_decay: float = 1e-5,
                 beta: float = 1e-5, gamma: float = 1e-5, rounds: int = 1):
        self.latent, self.hidden, self.lr, self.weight_decay = int(latent), int(hidden), float(lr), float(weight_decay)
        self.beta, self.rounds = float(beta), int(rounds)
        self.objective = Disagreement(gamma=float(gamma))

    def bind(self, teacher, student, seeds, device="cpu") -> None:
        super().bind(teacher, student, seeds, device)
        gens = rng.generators(self.seeds, "method_init")
        self.net = MLPStack.init(self.latent, self.hidden, self.d, gens, device=self.device)
        self.opt = RMSpropStack(self.net.flat, self.lr, self.weight_decay)

    def start_epoch(self, epoch: int, m: int) -> None:
        for _ in range(self.rounds):
            z = self.randn(m, self.latent)
            x, g_cache = self.net.forward(z, keep=True)
            gx = self.objective.input_grad(self.teacher, self.student, x)
            gx.add_(x, alpha=2.0 * self.beta)
            grad = self.net.backward(g_cache, gx, params=True)[0]
            self.opt.step(grad)

    def sample(self, m: int) -> torch.Tensor:
        return self.net.forward(self.randn(m, self.latent))
