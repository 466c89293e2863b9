"""Teacher-student matching when a little real data is left (Kang & Kang 2024, EAAI 132, 108001).

Only the abstract is public: a base KD objective on the few labelled real rows, plus three matching terms
between teacher T and student S. What follows is our implementation of that description; every choice
is ours and is named in ``conf/method/tsm.yaml``. Per student step, per replica, with b real rows
(x_r, y_r) drawn with replacement from the cell's real rows::

    base  kd * mean (S(x_r) - T(x_r))^2 + lambda_y * mean (S(x_r) - y_r)^2
    PM    pm * mean (S(x_pm) - T(x_pm))^2,     x_pm = x_r + eps, eps ~ N(0, sigma_p^2 I) fresh every step
    ABM   abm * mean (S(x_a) - T(x_a))^2,      x_a = a few ascent steps on (T - S)^2 from x_pm (or x_r)
    GM    gm * mean_rows |grad_x S(x) - grad_x T(x)|^2   over x_r, x_pm and x_a

ABM's ascent is the paper's direct optimization (:class:`dfkd.methods.direct.Direct`, eq. 5 of Zhou &
Chiam 2023) started from those points instead of N(0, I). The engine weighs the whole term by alpha
(alpha = 1: nothing else; a smaller alpha adds the random rows x_p as for every method). The rows of the
active row terms (base, PM, ABM) share the engine's batch m: each gets ``m // k`` rows for k active terms,
so a step touches as many rows as any other method's.
"""

from __future__ import annotations

import torch

from dfkd.core import rng
from dfkd.core.state import generator_states, set_generator_states
from dfkd.core.validate import number
from dfkd.errors import ConfigError
from dfkd.methods.base import Method
from dfkd.methods.direct import Direct


def gm_value(student, x: torch.Tensor, teacher_grad: torch.Tensor, flat: torch.Tensor | None = None,
             create_graph: bool = False) -> torch.Tensor:
    """Gradient matching per replica ``(R,)``: ``mean_rows |grad_x S(x) - teacher_grad|^2``.

    The student's input gradient comes from autograd through its forward (any stack whose ``forward``
    takes ``flat`` and works on tensors that require grad); with ``create_graph`` the value can be
    differentiated again with respect to ``flat`` (double backprop).
    """
    x = x.detach().requires_grad_(True)
    out = student.predict(x, flat)
    (gx,) = torch.autograd.grad(out.sum(), x, create_graph=create_graph)
    diff = (gx - teacher_grad).flatten(2)
    return (diff * diff).sum(-1).mean(1)


class TSM(Method):
    """Base KD on the real rows plus PM, ABM and GM (see the module docstring); each term has its weight.

    Args:
        kd: weight of the teacher-matching term on the real rows (base KD).
        lambda_y: weight of the true-label term on the real rows.
        pm: weight of perturbation matching; ``sigma_p`` its noise std in standardised units.
        abm: weight of adversarial belief matching; ``ascent`` the direct-optimization settings of its steps
            (``lr``, ``steps``, ``beta``, ``gamma``), ``abm_from`` its starting points: ``pm`` or ``real``.
        gm: weight of gradient matching (needs the teacher's input gradients).
    """

    name = "tsm"
    owns_loss = True
    draws_base = False

    def __init__(self, kd: float = 1.0, lambda_y: float = 0.0, pm: float = 0.0, sigma_p: float = 0.1,
                 abm: float = 0.0, ascent: dict | None = None, abm_from: str = "pm", gm: float = 0.0):
        self.kd, self.lambda_y, self.pm, self.abm, self.gm = (
            self._weight(v, k) for v, k in ((kd, "kd"), (lambda_y, "lambda_y"), (pm, "pm"), (abm, "abm"), (gm, "gm")))
        self.sigma_p = number(sigma_p, "method.sigma_p")
        if self.sigma_p <= 0:
            raise ConfigError(f"method.sigma_p must be > 0 (the PM noise std), got {sigma_p}")
        if abm_from not in ("pm", "real"):
            raise ConfigError(f"method.abm_from must be 'pm' or 'real', got {abm_from!r}")
        self.abm_from = abm_from
        if not (self.kd or self.lambda_y or self.pm or self.abm):
            raise ConfigError("method tsm has no row term: set at least one of method.kd, lambda_y, pm, abm > 0")
        params = dict(ascent or {})
        unknown = sorted(set(params) - {"lr", "steps", "beta", "gamma"})
        if unknown:
            raise ConfigError(f"method.ascent takes lr, steps, beta, gamma, not {', '.join(unknown)}")
        if int(params.get("steps", 2)) < 1:
            raise ConfigError(f"method.ascent.steps must be >= 1, got {params.get('steps')}")
        self.ascent = Direct(**params)

    @staticmethod
    def _weight(value, key: str) -> float:
        value = number(value, f"method.{key}")
        if value < 0:
            raise ConfigError(f"method.{key} is a weight and must be >= 0, got {value}")
        return value

    @property
    def needs_gradients(self) -> bool:
        return bool(self.abm or self.gm)

    def bind(self, teacher, student, seeds, device="cpu", context=None) -> None:
        if self.real is None:
            raise ConfigError(f"method '{self.name}' matches teacher and student on real rows but the cell has "
                              f"none: set real_fraction (e.g. real_fraction=0.1) or real_rows")
        if self.needs_gradients and not getattr(teacher, "differentiable", True):
            used = " and ".join(t for t, w in (("ABM", self.abm), ("GM", self.gm)) if w)
            raise ConfigError(f"method '{self.name}' uses {used}, which need the teacher's input gradients, but this "
                              f"teacher is a black box: set method.gm=0 method.abm=0 (base KD + PM), or use method=de")
        super().bind(teacher, student, seeds, device, context)
        self.rows = rng.generators(self.seeds, "tsm_rows")
        if self.abm:
            self.ascent.bind(teacher, student, seeds, device, context)

    def set_noise(self, noise) -> None:
        super().set_noise(noise)
        self.ascent.set_noise(noise)

    def state_dict(self) -> dict:
        return {"rows": generator_states(self.rows), "ascent": self.ascent.state_dict() if self.abm else {}}

    def load_state_dict(self, state: dict) -> None:
        set_generator_states(self.rows, state["rows"])
        if self.abm:
            self.ascent.load_state_dict(state["ascent"])

    def terms(self, m: int):
        """This step's rows and their per-row weights: ``(x (R, n, ...), w (n,), y_true (R, b), b)``; the
        first b rows are the real ones."""
        k = sum(1 for w in (self.kd or self.lambda_y, self.pm, self.abm) if w)
        b = max(1, m // k)
        x_r, y_r = self.real.draw(self.rows, b)
        x_r = x_r.to(self.device)
        parts, weights = [], []
        if self.kd or self.lambda_y:
            parts.append(x_r)
            weights.append(self.kd)
        if self.pm or (self.abm and self.abm_from == "pm"):
            x_pm = x_r + self.sigma_p * self.randn(b, *self.input_shape)
            if self.pm:
                parts.append(x_pm)
                weights.append(self.pm)
        if self.abm:
            start = x_pm if self.abm_from == "pm" else x_r
            parts.append(self.ascent.optimize(start.clone()))
            weights.append(self.abm)
        w = torch.cat([torch.full((b,), wt / b, device=self.device) for wt in weights])
        return torch.cat(parts, 1), w, y_r.to(self.device), b

    def student_gradient(self, m: int, weight: float):
        x, w, y_r, b = self.terms(m)
        student = self.student
        t, t_cache = self.teacher.forward(x, keep=True) if self.gm else (self.teacher.predict(x), None)
        t = t.squeeze(-1) if t.dim() == 3 else t
        s, cache = student.forward(x, keep=True)
        diff = s.squeeze(-1) - t
        loss = (diff * diff * w).sum(1)
        g_out = diff * (2.0 * weight * w)
        if self.lambda_y:
            miss = diff[:, :b] + t[:, :b] - y_r  # S - y on the real rows
            loss = loss + (self.lambda_y / b) * (miss * miss).sum(1)
            g_out[:, :b] += miss * (2.0 * weight * self.lambda_y / b)
        grad = student.backward(cache, g_out)[0]
        if self.gm:
            t_grad = self.teacher.backward(t_cache, torch.ones_like(t), params=False, inputs=True)[1]
            flat = student.flat.detach().requires_grad_(True)
            value = gm_value(student, x, t_grad.detach(), flat, create_graph=True)
            (g_flat,) = torch.autograd.grad(value.sum() * (weight * self.gm), flat)
            grad = grad + g_flat
            loss = loss + self.gm * value.detach()
        return grad, loss
