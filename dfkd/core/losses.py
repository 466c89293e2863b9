"""The loss switch L(d) of the student (eq. 2), the teacher (MNIST) and the synthetic-data objectives
(eqs. 3, 5, 8, 9): ``mse`` (d^2) or ``logcosh`` (log cosh d). One place for both forms and their slopes."""

from __future__ import annotations

import math

import torch

from dfkd.errors import ConfigError

LOSSES = ("mse", "logcosh")


def check_loss(loss: str, what: str) -> str:
    """``loss`` if it is one of :data:`LOSSES`, else a one-line ConfigError naming ``what`` (e.g. ``student.loss``)."""
    if loss not in LOSSES:
        raise ConfigError(f"{what} '{loss}' unknown: use {' or '.join(LOSSES)}")
    return loss


def logcosh(d: torch.Tensor) -> torch.Tensor:
    """``log(cosh(d))`` without overflow: ``|d| + log1p(exp(-2|d|)) - log 2``."""
    a = d.abs()
    return a + torch.log1p(torch.exp(-2.0 * a)) - math.log(2.0)


def loss_terms(diff: torch.Tensor, loss: str, weight: float = 1.0):
    """``weight * L(diff)`` per element and the derivative of ``L`` as ``slope * factor``.

    Returns ``(weight * diff^2, diff, 2)`` for mse or ``(weight * logcosh(diff), tanh(diff), 1)`` for logcosh.
    The product is formed left to right (``weight * diff * diff``) as the numbers were always formed.
    """
    if loss == "mse":
        return (diff * diff if weight == 1.0 else weight * diff * diff), diff, 2.0
    value = logcosh(diff)
    return (value if weight == 1.0 else weight * value), torch.tanh(diff), 1.0
