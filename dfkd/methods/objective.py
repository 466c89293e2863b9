"""The disagreement objective that synthetic data maximises (paper eqs. 3 and 5).

Minimised over x (direct optimization) or over the generator's weights::

    mean_rows( -(T(x) - S(x))^2 + gamma * S(x)^2 )

The first term seeks inputs where student and teacher disagree; the second keeps
the student's output from growing without bound.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from dfkd.models.mlp import MLPStack


@dataclass(frozen=True)
class Disagreement:
    """``-disagreement * (T - S)^2 + gamma * S^2``, averaged over rows, per replica."""

    gamma: float = 1e-5
    disagreement: float = 1.0

    def grads(self, t: torch.Tensor, s: torch.Tensor):
        """Objective value per replica ``(R,)`` and its gradients w.r.t. T and S outputs ``(R, m)``."""
        m = t.shape[1]
        diff = t - s
        value = (-self.disagreement * diff * diff + self.gamma * s * s).mean(1)
        g_t = diff * (-2.0 * self.disagreement / m)
        g_s = diff * (2.0 * self.disagreement / m) + s * (2.0 * self.gamma / m)
        return value, g_t, g_s

    def input_grad(self, teacher: MLPStack, student: MLPStack, x: torch.Tensor, extra=None):
        """d objective / d x for a batch ``(R, m, d)``, through both networks."""
        t, t_cache = teacher.forward(x, keep=True)
        s, s_cache = student.forward(x, keep=True)
        _, g_t, g_s = self.grads(t.squeeze(-1), s.squeeze(-1))
        gx = teacher.backward(t_cache, g_t, params=False, inputs=True)[1]
        gx += student.backward(s_cache, g_s, params=False, inputs=True)[1]
        return gx
