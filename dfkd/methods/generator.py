"""An adversarially trained generator (Kang & Kang 2021; paper eq. 3, and eq. 8 for MNIST)."""

from __future__ import annotations

import torch

from dfkd.core import rng
from dfkd.core.state import generator_states, restore_, set_generator_states
from dfkd.core.optim import RMSpropStack
from dfkd.errors import ConfigError
from dfkd.methods.base import Method
from dfkd.methods.objective import objective_from
from dfkd.models.mlp import MLPStack

ARCHS = ("mlp", "conv")


class Generator(Method):
    """A generator G(z), z ~ N(0, I) of width ``latent``, trained against the student.

    ``arch: mlp`` (tables): G = Linear(latent, hidden) -> tanh -> Linear(hidden, d).
    ``arch: conv`` (images): the transposed-convolution generator of
    :class:`dfkd.models.cnn.ConvGeneratorStack` with a sigmoid output, so every
    pixel stays in (0, 1).

    Once per epoch, ``rounds`` times (n_g = 1 for the tables, 20 for MNIST), G takes
    an RMSprop step on the objective of x = G(z) at the student's batch size, plus
    ``beta * sum(x^2)``. The tabular L2 term is summed over all m x d entries, as in
    the authors' code, so it grows with m. Each student step then draws a fresh z
    through the current G.

    Args:
        latent, hidden: widths of z and of G's hidden layer (for ``conv``: channels of its first feature map).
        lr, weight_decay: G's RMSprop.
        beta: weight of ``sum(x^2)`` (eq. 3; 0 for eq. 8, whose L1 term is in the objective).
        gamma: weight of S(x)^2 in the tabular objective; omit when ``objective`` is given.
        rounds: generator steps per epoch.
        objective: the objective's terms (:class:`dfkd.methods.objective.Objective`), e.g. eq. 8's.
        arch: ``mlp`` or ``conv``.
    """

    name = "generator"
    draws_base = False  # its rows come from its latent noise, not from base points: `start` cannot apply
    needs_gradients = True

    def __init__(self, latent: int = 50, hidden: int = 500, lr: float = 1e-3, weight_decay: float = 1e-5,
                 beta: float = 1e-5, gamma: float | None = None, rounds: int = 1, objective: dict | None = None,
                 arch: str = "mlp"):
        self.latent, self.hidden, self.lr, self.weight_decay = int(latent), int(hidden), float(lr), float(weight_decay)
        self.beta, self.rounds = float(beta), int(rounds)
        self.objective = objective_from(objective, gamma)
        if arch not in ARCHS:
            raise ConfigError(f"generator arch '{arch}' unknown: use one of {', '.join(ARCHS)}")
        self.arch = arch

    def bind(self, teacher, student, seeds, device="cpu", context=None) -> None:
        super().bind(teacher, student, seeds, device, context)
        gens = rng.generators(self.seeds, "method_init")
        if self.arch == "mlp":
            self.net = MLPStack.init(self.latent, self.hidden, self.d, gens, device=self.device)
        else:
            from dfkd.models.cnn import ConvGeneratorStack

            self.net = ConvGeneratorStack.init(self.latent, self.hidden, self.input_shape, gens, device=self.device)
        self.opt = RMSpropStack(self.net.flat, self.lr, self.weight_decay)
        self.targets = rng.generators(self.seeds, "method_target")

    def state_dict(self) -> dict:
        """G's parameters, its RMSprop state and the y_rand streams (z comes from the engine's noise streams)."""
        return {"net": self.net.flat.detach().cpu().clone(), "opt": self.opt.state_dict(),
                "targets": generator_states(self.targets)}

    def load_state_dict(self, state: dict) -> None:
        restore_(self.net.flat, state["net"])  # in place: the optimizer and the layer views share it
        self.opt.load_state_dict(state["opt"])
        set_generator_states(self.targets, state["targets"])

    def _shaped(self, x: torch.Tensor) -> torch.Tensor:
        return x.view((x.shape[0], x.shape[1]) + self.input_shape)

    def start_epoch(self, epoch: int, m: int) -> None:
        for _ in range(self.rounds):
            z = self.randn(m, self.latent)
            x, g_cache = self.net.forward(z, keep=True)
            x = self._shaped(x)
            y = self.objective.draw_target(self.targets, m, self.device)
            gx = self.objective.input_grad(self.teacher, self.student, x, y)
            if self.beta:
                gx.add_(x, alpha=2.0 * self.beta)
            grad = self.net.backward(g_cache, gx.view(x.shape[0], m, -1) if self.arch == "mlp" else gx,
                                     params=True)[0]
            self.opt.step(grad)

    def sample(self, m: int) -> torch.Tensor:
        return self._shaped(self.net.forward(self.randn(m, self.latent)))
