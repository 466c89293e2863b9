"""Optimizers and schedules for stacks of replicas.

:class:`RMSpropStack` performs exactly ``torch.optim.RMSprop``'s update
(non-centred, no momentum) on an ``(R, P)`` tensor with a learning rate per
replica; :class:`PlateauStack` is ``torch.optim.lr_scheduler.ReduceLROnPlateau``
(mode min, relative threshold, no cooldown) kept separately for each replica.
"""

from __future__ import annotations

import math

import torch

from dfkd.core.state import restore_


class RMSpropStack:
    """RMSprop over a stack: ``v = a v + (1-a) g^2``, ``p -= lr g / (sqrt(v) + eps)``.

    Weight decay adds ``wd * p`` to the gradient first, as torch does.
    ``lr`` is a per-replica ``(R, 1)`` tensor so schedules can differ per replica;
    a replica whose lr is 0 is frozen (its parameters do not move).
    """

    def __init__(self, params: torch.Tensor, lr: float, weight_decay: float = 0.0, alpha: float = 0.99, eps: float = 1e-8):
        self.params = params
        self.lr = torch.full((params.shape[0],) + (1,) * (params.dim() - 1), float(lr), device=params.device)
        self.weight_decay, self.alpha, self.eps = weight_decay, alpha, eps
        self.square_avg = torch.zeros_like(params)

    def step(self, grad: torch.Tensor) -> None:
        """Apply one update in place. ``grad`` is consumed (may be modified)."""
        p, v = self.params, self.square_avg
        if self.weight_decay:
            grad.add_(p, alpha=self.weight_decay)
        v.mul_(self.alpha).addcmul_(grad, grad, value=1 - self.alpha)
        denom = v.sqrt().add_(self.eps)
        p.sub_(grad.div_(denom).mul_(self.lr))

    def state_dict(self) -> dict:
        """What a checkpoint needs to continue exactly: the square averages and the per-replica lr (CPU copies).
        The parameters themselves belong to the model and are saved with it."""
        return {"square_avg": self.square_avg.detach().cpu().clone(), "lr": self.lr.detach().cpu().clone()}

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict`'s output in place (the lr tensor may be shared with a scheduler)."""
        restore_(self.square_avg, state["square_avg"])
        restore_(self.lr, state["lr"])


def fresh_rmsprop_steps(x: torch.Tensor, grad_fn, steps: int, lr: float, weight_decay: float,
                        alpha: float = 0.99, eps: float = 1e-8, project=None) -> torch.Tensor:
    """Optimise a tensor with a brand-new RMSprop for a few steps (paper Algorithm 2).

    The direct-optimization method treats the synthetic batch itself as the
    parameter of a fresh RMSprop. With zero initial state the first step moves
    every coordinate by about ``lr / sqrt(1 - alpha)`` (= 1.0 for lr 0.1) in the
    sign of its gradient, the second by about 0.7 of that: this is what
    produced the paper's numbers, so it is kept exactly.

    Args:
        x: starting point, updated in place and returned.
        grad_fn: ``x -> d objective / d x`` (same shape as x).
        project: optional in-place ``x -> x`` applied after every step (e.g. clipping
            images back into [0, 1]); the optimizer's state is not touched by it.
    """
    v = torch.zeros_like(x)
    for _ in range(steps):
        g = grad_fn(x)
        if weight_decay:
            g.add_(x, alpha=weight_decay)
        v.mul_(alpha).addcmul_(g, g, value=1 - alpha)
        x.addcdiv_(g, v.sqrt().add_(eps), value=-lr)
        if project is not None:
            project(x)
    return x


class PlateauStack:
    """``ReduceLROnPlateau(mode="min", factor, patience, threshold=1e-4 rel)`` per replica.

    Call :meth:`step` only for the replicas the caller wants to inform (the
    paper's teacher loop calls it on non-improving epochs only).
    """

    def __init__(self, lr: torch.Tensor, factor: float = 0.5, patience: int = 10, threshold: float = 1e-4,
                 min_lr: float = 0.0, eps: float = 1e-8):
        self.lr = lr  # shared with the optimizer: updated in place
        self.factor, self.patience, self.threshold, self.min_lr, self.eps = factor, patience, threshold, min_lr, eps
        n = lr.shape[0]
        self.best = [math.inf] * n
        self.num_bad = [0] * n

    def step(self, r: int, metric: float) -> None:
        """Report replica r's metric; halve its lr after more than ``patience`` bad calls."""
        if metric < self.best[r] * (1.0 - self.threshold):
            self.best[r] = metric
            self.num_bad[r] = 0
        else:
            self.num_bad[r] += 1
        if self.num_bad[r] > self.patience:
            old = float(self.lr[r].item())
            new = max(old * self.factor, self.min_lr)
            if old - new > self.eps:
                self.lr[r] = new
            self.num_bad[r] = 0
