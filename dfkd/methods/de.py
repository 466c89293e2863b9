"""Direct optimization by differential evolution, for teachers without gradients (paper section 3.6, eq. 9).

"If gradient information of the teacher model is unavailable [...] it is
possible to use metaheuristics optimization that does not require gradients
instead of gradient descent." Per student step and replica, the synthetic rows
are the final population of ``scipy.optimize.differential_evolution`` started
from m rows of the dataset's base distribution and minimising eq. 9 row by row:

    L_G(x) = -eps (T(x) - S(x))^2 + w (T(x) - y_rand)^2,    y_rand ~ U(0, 1) per step

The first term seeks disagreement between teacher and student, the second keeps
the teacher's answer near a random target so the rows cover the output range.
The paper writes w = 1 - eps; the authors' notebook, which produced Table 6,
uses w = 1 (``target_weight``, default 1). Settings as in that notebook (SPEC
section 3): ``best2bin``, 25 generations, no polishing, scipy's default
tolerance, mutation and recombination, bounds = the box the runner passes in
(the training set's per-feature min and max + 0.01).

Every generation is evaluated in one batched call: ``vectorized=True`` hands the
objective the whole population (which requires ``updating='deferred'``), so a
generation costs one teacher call and one student call, not one per candidate.
``batched=False`` evaluates one candidate per call (same result, for ``make
bench``). The method needs only the teacher's ``predict``, so it works with
black-box and tabular MLP teachers alike.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import differential_evolution

from dfkd.engine import rng
from dfkd.errors import ConfigError
from dfkd.methods.base import Method

MIN_POPULATION = 5  # scipy's smallest population (and best2bin needs 4 others besides the best)


@dataclass(frozen=True)
class TargetedDisagreement:
    """Paper eq. 9, per row: ``-eps (T - S)^2 + weight (T - y_rand)^2`` (minimised)."""

    eps: float = 0.05
    weight: float = 1.0

    def terms(self, t, s, y_rand):
        """The two terms separately: ``(-eps (T - S)^2, weight (T - y_rand)^2)``."""
        return -self.eps * (t - s) ** 2, self.weight * (t - y_rand) ** 2

    def __call__(self, t, s, y_rand):
        disagreement, target = self.terms(t, s, y_rand)
        return disagreement + target


def replica_predict(model, r: int, X: np.ndarray, input_shape) -> np.ndarray:
    """Replica r's scalar outputs for rows ``X`` ``(S, prod(input_shape))``, as float64 numpy.

    Uses ``predict_replica`` when the model has it (black boxes, which count
    the rows), else evaluates the stack on replica r's parameters alone.
    """
    if hasattr(model, "predict_replica"):
        return np.asarray(model.predict_replica(r, X), dtype=np.float64)
    x = torch.as_tensor(X, dtype=torch.float32, device=model.device).reshape(1, X.shape[0], *input_shape)
    return model.predict(x, model.flat[r:r + 1])[0].to("cpu", torch.float64).numpy()


class DifferentialEvolution(Method):
    """x_g = final population of a differential evolution on eq. 9, one run per step and replica."""

    name = "de"

    def __init__(self, eps: float = 0.05, target_weight: float = 1.0, target_low: float = 0.0,
                 target_high: float = 1.0, generations: int = 25, strategy: str = "best2bin", tol: float = 0.01,
                 mutation=(0.5, 1.0), recombination: float = 0.7, batched: bool = True):
        for name, value in (("eps", eps), ("target_weight", target_weight), ("tol", tol)):
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ConfigError(f"method.{name} must be a finite number >= 0, got {value!r}")
        if isinstance(generations, bool) or not isinstance(generations, int) or generations < 1:
            raise ConfigError(f"method.generations must be a positive integer, got {generations!r}")
        if not float(target_low) <= float(target_high):
            raise ConfigError(f"method.target_low ({target_low}) must not exceed method.target_high ({target_high})")
        self.objective = TargetedDisagreement(eps=float(eps), weight=float(target_weight))
        self.target_low, self.target_high = float(target_low), float(target_high)
        self.generations, self.strategy, self.tol = int(generations), str(strategy), float(tol)
        self.mutation = tuple(mutation) if isinstance(mutation, (list, tuple)) else float(mutation)
        self.recombination, self.batched = float(recombination), bool(batched)

    def bind(self, teacher, student, seeds, device="cpu", context=None) -> None:
        """Attach to the stacks; ``context.bounds`` (lo, hi) is the search box, ``context.sampler`` the start rows."""
        self.teacher, self.student, self.seeds = teacher, student, list(seeds)
        self.device = torch.device(device)
        self.context = context
        self.input_shape = tuple(getattr(teacher, "input_shape", (teacher.d_in,)))
        self.d = int(np.prod(self.input_shape))
        bounds = getattr(context, "bounds", None)
        if bounds is None:
            raise ConfigError("method=de needs a search box: the dataset's synthetic settings must give bounds "
                              "(e.g. the training set's per-feature range)")
        lo, hi = (np.broadcast_to(np.asarray(torch.as_tensor(b).cpu(), dtype=np.float64).reshape(-1), (self.d,))
                  for b in bounds)
        if not np.all(lo < hi):
            raise ConfigError("method=de: every lower bound must be below its upper bound")
        self.bounds = list(zip(lo.tolist(), hi.tolist()))
        self.rngs = [np.random.default_rng(rng.stream_seed(s, "de")) for s in self.seeds]
        self.generations_run: list[int] = []

    def start_points(self, m: int) -> torch.Tensor:
        """m rows per replica from the dataset's base distribution (N(0, I) without one)."""
        sampler = getattr(self.context, "sampler", None)
        if sampler is None:
            return self.randn(m, *self.input_shape)
        return sampler(self.noise, m, self.device)

    def solve(self, r: int, init: np.ndarray) -> np.ndarray:
        """One differential evolution for replica r from ``init`` ``(m, d)``; returns the final population."""
        y_rand = self.rngs[r].uniform(self.target_low, self.target_high)

        def energies(X):  # X: (S, d)
            t = replica_predict(self.teacher, r, X, self.input_shape)
            s = replica_predict(self.student, r, X, self.input_shape)
            return self.objective(t, s, y_rand)

        if self.batched:
            func = lambda x: energies(x.T)  # noqa: E731  (vectorized: x is (d, S))
        else:
            func = lambda x: float(energies(x[None])[0])  # noqa: E731
        res = differential_evolution(func, self.bounds, init=init, strategy=self.strategy, maxiter=self.generations,
                                     tol=self.tol, mutation=self.mutation, recombination=self.recombination,
                                     rng=self.rngs[r], polish=False, updating="deferred", vectorized=self.batched)
        self.generations_run.append(int(res.nit))
        return res.population

    def sample(self, m: int) -> torch.Tensor:
        """The final populations ``(R, m, *input_shape)``, float32."""
        if m < MIN_POPULATION:
            raise ConfigError(f"method=de needs at least {MIN_POPULATION} rows per batch (scipy's smallest "
                              f"population), got {m}: set batch_size={MIN_POPULATION} or more")
        start = self.start_points(m).reshape(len(self.seeds), m, self.d).to("cpu", torch.float64).numpy()
        out = np.stack([self.solve(r, start[r]) for r in range(len(self.seeds))])
        return torch.from_numpy(out).to(self.device, torch.float32).reshape(len(self.seeds), m, *self.input_shape)
