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
uses w = 1 (the objective's ``target``, default 1). The terms are configuration
(:class:`dfkd.methods.objective.Objective`, ``objective:`` in the method yaml),
evaluated here row by row: DE minimises each candidate's own value. Settings as in that notebook (SPEC
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

import numpy as np
import torch
from scipy.optimize import differential_evolution

from dfkd.core import rng
from dfkd.core.state import generator_states, set_generator_states
from dfkd.errors import ConfigError
from dfkd.methods.base import Method
from dfkd.core.losses import loss_terms
from dfkd.methods.objective import Objective, objective_from

MIN_POPULATION = 5  # scipy's smallest population (and best2bin needs 4 others besides the best)

#: eq. 9 as the authors' notebook weights it: eps = 0.05, target weight 1, one y_rand ~ U(0, 1) per step.
EQ9 = {"disagreement": 0.05, "target": 1.0, "y_rand": "uniform", "y_low": 0.0, "y_high": 1.0, "y_per": "batch"}


def row_energies(obj: Objective, t: np.ndarray, s: np.ndarray, y, x: np.ndarray | None = None) -> np.ndarray:
    """The objective's value for each row separately (float64), e.g. eq. 9:
    ``-eps (T - S)^2 + w (T - y_rand)^2`` with ``obj.disagreement = eps`` and ``obj.target = w``.

    Args:
        t, s: teacher and student outputs ``(S,)``.
        y: y_rand, a number or ``(S,)`` (ignored when the objective has no target term).
        x: the rows ``(S, d)``, needed only for an L1 term.
    """
    value = loss_terms(torch.from_numpy(t - s), obj.loss, -obj.disagreement)[0].numpy()
    if obj.gamma:
        value = value + obj.gamma * s * s
    if obj.target:
        value = value + obj.target * (t - y) ** 2
    if obj.l1:
        value = value + obj.l1 * np.abs(x).sum(1)
    return value


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
    """x_g = final population of a differential evolution on eq. 9, one run per step and replica.

    Args:
        objective: the objective's terms (:class:`~dfkd.methods.objective.Objective`); default eq. 9 as
            the authors' notebook: ``{disagreement: 0.05, target: 1, y_rand: uniform, y_low: 0, y_high: 1,
            y_per: batch}``.
        generations: scipy's ``maxiter`` (25).
        strategy, tol, mutation, recombination: scipy's settings (``best2bin``, and scipy's defaults).
        batched: evaluate each generation in one call (``vectorized=True``); False = one candidate per call.
    """

    name = "de"

    def __init__(self, objective: dict | None = None, generations: int = 25, strategy: str = "best2bin",
                 tol: float = 0.01, mutation=(0.5, 1.0), recombination: float = 0.7, batched: bool = True):
        self.objective = objective_from(dict(EQ9) if objective is None else objective)
        if isinstance(generations, bool) or not isinstance(generations, int) or generations < 1:
            raise ConfigError(f"method.generations must be a positive integer, got {generations!r}")
        if not (isinstance(tol, (int, float)) and math.isfinite(tol) and tol >= 0):
            raise ConfigError(f"method.tol must be a finite number >= 0, got {tol!r}")
        self.generations, self.strategy, self.tol = int(generations), str(strategy), float(tol)
        self.mutation = tuple(mutation) if isinstance(mutation, (list, tuple)) else float(mutation)
        self.recombination, self.batched = float(recombination), bool(batched)

    def bind(self, teacher, student, seeds, device="cpu", context=None) -> None:
        """Attach to the stacks; ``context.bounds`` (lo, hi) is the search box, ``context.sampler`` the start rows."""
        super().bind(teacher, student, seeds, device, context)
        if self.context.bounds is None:
            raise ConfigError("method=de needs a search box: the dataset's synthetic settings must give bounds "
                              "(e.g. bounds: train_range), or its base distribution must be bounded")
        lo, hi = (np.broadcast_to(np.asarray(torch.as_tensor(b).cpu(), dtype=np.float64), self.input_shape)
                  .reshape(-1) for b in self.context.bounds)
        if not np.all(lo < hi):
            raise ConfigError("method=de: every lower bound must be below its upper bound")
        self.bounds = list(zip(lo.tolist(), hi.tolist()))
        self.rngs = [np.random.default_rng(rng.stream_seed(s, "de")) for s in self.seeds]
        self.targets = rng.generators(self.seeds, "method_target")
        self.generations_run: list[int] = []

    def state_dict(self) -> dict:
        """The per-replica numpy streams scipy draws mutations from, the y_rand streams and the
        generations each solve ran (the start rows come from the engine's noise streams)."""
        return {"rngs": [g.bit_generator.state for g in self.rngs], "targets": generator_states(self.targets),
                "generations_run": list(self.generations_run)}

    def load_state_dict(self, state: dict) -> None:
        rngs = state["rngs"]
        if len(rngs) != len(self.rngs):
            raise ValueError(f"expected {len(self.rngs)} DE streams, got {len(rngs)}")
        for g, s in zip(self.rngs, rngs):
            g.bit_generator.state = s
        set_generator_states(self.targets, state["targets"])
        self.generations_run = [int(n) for n in state["generations_run"]]

    def solve(self, r: int, init: np.ndarray, y=0.0) -> np.ndarray:
        """One differential evolution for replica r from ``init`` ``(m, d)`` towards target(s) ``y``;
        returns the final population ``(m, d)``."""
        def energies(X, rows=slice(None)):  # X: (S, d)
            t = replica_predict(self.teacher, r, X, self.input_shape)
            s = replica_predict(self.student, r, X, self.input_shape)
            return row_energies(self.objective, t, s, y if np.isscalar(y) else y[rows], X)

        if self.batched:
            func = lambda x: energies(x.T)  # noqa: E731  (vectorized: x is (d, S), the whole population)
        else:
            # One candidate per call: scipy evaluates trials in population order, so the call index
            # names the member (and its own y_rand when y is per row).
            calls = iter(range(10 ** 12))
            func = lambda x: float(energies(x[None], [next(calls) % len(init)])[0])  # noqa: E731
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
        n_rep = len(self.seeds)
        start = self.base(m).reshape(n_rep, m, self.d).to("cpu", torch.float64).numpy()
        y = self.objective.draw_target(self.targets, m)
        y = np.zeros((n_rep, m)) if y is None else y.to(torch.float64).numpy()
        out = np.stack([self.solve(r, start[r], float(y[r, 0]) if self.objective.y_per == "batch" else y[r])
                        for r in range(n_rep)])
        return torch.from_numpy(out).to(self.device, torch.float32).reshape(n_rep, m, *self.input_shape)
