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

Two engines (``engine:``):

- ``scipy`` (the default and the reference): one ``scipy.optimize.differential_evolution``
  per step and replica, as above.
- ``batched``: the same algorithm written out for all R replicas' populations at once
  (:meth:`DifferentialEvolution.evolve`): best2bin (``b' = best + F (x_r0 + x_r1 - x_r2 - x_r3)``
  on the unit-scaled population, binomial crossover with one forced coordinate),
  out-of-box coordinates redrawn uniformly, deferred updating (a trial replaces its
  parent when its energy is lower or equal, then the best is swapped to row 0), F drawn
  once per generation from ``mutation``, scipy's stopping rule per replica
  (``std(E) <= tol |mean(E)|``), each replica drawing from its own stream. The draws
  are not scipy's (a step's F, partners and crossover uniforms come at once, in float32;
  the four distinct partners by sequential picks, not shuffles) and the populations are
  float32, so the two engines agree in distribution; given the same partners and draws,
  a generation's trials are scipy's bit for bit in float64 (``tests/test_de_tabular.py``).
  One generation is one teacher call and one student call for the whole stack, which
  removes scipy's per-call overhead (R calls per step; the tabular benchmark's 20000 steps
  x 10 replicas: ``conf/method/de_tabular.yaml`` gives the measured costs).

Tabular datasets have no search box (their base distribution N(0, I) is unbounded):
``box: b`` then searches ``[-b, b]^d``, i.e. +-b standard deviations of the base
distribution (``conf/method/de_tabular.yaml``). A dataset's own bounds take precedence.
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
        t, s: teacher and student outputs ``(S,)`` (or ``(R, S)``: several replicas' rows at once).
        y: y_rand, a number or broadcastable to ``t`` (ignored when the objective has no target term).
        x: the rows ``(S, d)`` (or ``(R, S, d)``), needed only for an L1 term.
    """
    value = loss_terms(torch.from_numpy(t - s), obj.loss, -obj.disagreement)[0].numpy()
    if obj.gamma:
        value = value + obj.gamma * s * s
    if obj.target:
        value = value + obj.target * (t - y) ** 2
    if obj.l1:
        value = value + obj.l1 * np.abs(x).sum(-1)
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


ENGINES = ("scipy", "batched")


def best2bin_trials(pop: np.ndarray, scale: np.ndarray, partners: np.ndarray, take: np.ndarray) -> np.ndarray:
    """best2bin trial vectors of R unit-scaled populations at once, with scipy's arithmetic (bit for bit in
    float64: ``tests/test_de_tabular.py`` checks it against scipy's ``_mutate_many``).

    ``b' = x_0 + F * (x_r0 + x_r1 - x_r2 - x_r3)`` (row 0 holds the best), then binomial crossover:
    coordinate j comes from ``b'`` where ``take`` (:func:`crossover_mask`), else from the parent. Bounds are
    not enforced here.

    Args:
        pop: ``(R, m, d)`` populations on the unit scale (float64 or float32; the result has its dtype).
        scale: ``(R,)`` mutation factors F.
        partners: ``(R, m, 4)`` indices r0..r3 of each row's partners.
        take: ``(R, m, d)`` bool, where the trial takes ``b'``.
    """
    k, m, _ = pop.shape
    flat = pop.reshape(k * m, -1)
    rows = partners + (np.arange(k) * m)[:, None, None]  # indices into the flattened populations
    trial = flat[rows[..., 0]]
    trial += flat[rows[..., 1]]
    trial -= flat[rows[..., 2]]
    trial -= flat[rows[..., 3]]
    trial *= np.asarray(scale, dtype=pop.dtype)[:, None, None]
    trial += pop[:, :1]
    return _select(take, trial, pop)


def crossover_mask(cross: np.ndarray, fill: np.ndarray) -> np.ndarray:
    """Binomial crossover's mask, in place: ``cross (..., m, d)`` (uniform draws below the recombination rate)
    with each row's ``fill (..., m)`` coordinate set, so every trial takes at least one coordinate of ``b'``."""
    lead = np.indices(fill.shape, sparse=True)
    cross[(*lead, fill)] = True
    return cross


def _select(mask: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``np.where(mask, a, b)``, exactly, written into ``a``: as bits, ``((a ^ b) & M) ^ b`` with M all ones where
    ``mask`` (measured 8x faster than ``np.where`` on a random mask of (10, 50, 520) float32)."""
    bits = np.int32 if a.dtype == np.float32 else np.int64
    full = mask.astype(bits)
    np.negative(full, out=full)
    out, other = a.view(bits), b.view(bits)
    np.bitwise_xor(out, other, out=out)
    out &= full
    out ^= other
    return a


def partners_from_uniforms(u: np.ndarray) -> np.ndarray:
    """For each row i of a population of m, 4 distinct partners other than i, in random order, from 4 uniforms
    per row: ``u (..., m, 4)`` in [0, 1) -> indices ``(..., m, 4)``.

    Partner k is uniform over the m - 1 - k rows not yet taken (nor i): ``floor(u_k (m - 1 - k))``, then moved
    past the taken rows in increasing order. Every ordered 4-tuple of distinct rows other than i is equally
    likely, as with scipy's shuffles (other draws, the same distribution).
    """
    m = u.shape[-2]
    taken = [np.broadcast_to(np.arange(m), u.shape[:-1])]  # rows taken so far, kept in increasing order
    out = np.empty(u.shape, dtype=np.int64)
    for k in range(4):
        j = np.minimum(np.floor(u[..., k].astype(np.float64) * (m - 1 - k)).astype(np.int64), m - 2 - k)
        for t in taken:  # ascending: each shifts j past one taken row
            j += j >= t
        out[..., k] = j
        if k < 3:  # insert j into the sorted list (min/max, element-wise)
            carry, merged = j, []
            for t in taken:
                merged.append(np.minimum(t, carry))
                carry = np.maximum(t, carry)
            taken = merged + [carry]
    return out


class DifferentialEvolution(Method):
    """x_g = final population of a differential evolution on eq. 9, one run per step and replica.

    Args:
        objective: the objective's terms (:class:`~dfkd.methods.objective.Objective`); default eq. 9 as
            the authors' notebook: ``{disagreement: 0.05, target: 1, y_rand: uniform, y_low: 0, y_high: 1,
            y_per: batch}``.
        generations: scipy's ``maxiter`` (25).
        strategy, tol, mutation, recombination: scipy's settings (``best2bin``, and scipy's defaults).
        batched: evaluate each generation in one call (``vectorized=True``); False = one candidate per call.
        box: without a dataset box, search ``[-box, box]`` in every coordinate (standard deviations of the
            N(0, I) base distribution); None = the dataset must give bounds.
        engine: ``scipy`` (one scipy run per step and replica) or ``batched`` (all replicas' populations
            evolved together: :meth:`evolve`; best2bin only).
    """

    name = "de"

    def __init__(self, objective: dict | None = None, generations: int = 25, strategy: str = "best2bin",
                 tol: float = 0.01, mutation=(0.5, 1.0), recombination: float = 0.7, batched: bool = True,
                 box: float | None = None, engine: str = "scipy"):
        self.objective = objective_from(dict(EQ9) if objective is None else objective)
        if isinstance(generations, bool) or not isinstance(generations, int) or generations < 1:
            raise ConfigError(f"method.generations must be a positive integer, got {generations!r}")
        if not (isinstance(tol, (int, float)) and math.isfinite(tol) and tol >= 0):
            raise ConfigError(f"method.tol must be a finite number >= 0, got {tol!r}")
        if box is not None and (isinstance(box, bool) or not isinstance(box, (int, float))
                                or not math.isfinite(box) or box <= 0):
            raise ConfigError(f"method.box must be a number > 0 (the search box's half-width in standard "
                              f"deviations of the N(0, I) base distribution, e.g. method.box=3), got {box!r}")
        if engine not in ENGINES:
            raise ConfigError(f"method.engine must be {' or '.join(ENGINES)}, got {engine!r}")
        if engine == "batched" and strategy != "best2bin":
            raise ConfigError(f"method.engine=batched implements strategy best2bin only, got {strategy!r}: "
                              f"use method.engine=scipy for other strategies")
        self.generations, self.strategy, self.tol = int(generations), str(strategy), float(tol)
        self.mutation = tuple(mutation) if isinstance(mutation, (list, tuple)) else float(mutation)
        self.recombination, self.batched = float(recombination), bool(batched)
        self.box, self.engine = (None if box is None else float(box)), engine

    def bind(self, teacher, student, seeds, device="cpu", context=None) -> None:
        """Attach to the stacks; ``context.bounds`` (lo, hi) is the search box (else ``box``), ``context.sampler``
        the start rows."""
        super().bind(teacher, student, seeds, device, context)
        bounds = self.context.bounds
        if bounds is None and self.box is not None:
            if getattr(self.context.sampler, "kind", None) != "normal":
                raise ConfigError(f"method.box is in standard deviations of the N(0, I) base distribution, but this "
                                  f"dataset's is '{self.context.sampler.kind}': give the dataset bounds instead")
            bounds = (torch.full(self.input_shape, -self.box), torch.full(self.input_shape, self.box))
        if bounds is None:
            raise ConfigError(f"method={self.name} needs a search box: the dataset's synthetic settings must give "
                              f"bounds (e.g. bounds: train_range), its base distribution must be bounded, or set "
                              f"method.box (e.g. method.box=3: +-3 standard deviations of N(0, I))")
        lo, hi = (np.broadcast_to(np.asarray(torch.as_tensor(b).cpu(), dtype=np.float64), self.input_shape)
                  .reshape(-1) for b in bounds)
        if not np.all(lo < hi):
            raise ConfigError(f"method={self.name}: every lower bound must be below its upper bound")
        self.bounds = list(zip(lo.tolist(), hi.tolist()))
        # scipy's affine map between the box and the unit cube (the same arithmetic, so the engines agree exactly)
        self._mid, self._width = 0.5 * (lo + hi), np.fabs(lo - hi)
        self._recip = 1.0 / self._width
        self._mid32, self._width32 = self._mid.astype(np.float32), self._width.astype(np.float32)
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

    # -- the batched engine ---------------------------------------------------------------------------
    def _rows(self, unit: np.ndarray) -> np.ndarray:
        """Rows of the box (float32) from unit-scaled ones, as scipy scales them: ``mid + (u - 1/2) width``."""
        X = (unit - np.float32(0.5)) * self._width32
        X += self._mid32
        return X

    def _energies(self, unit: np.ndarray, y: np.ndarray, idx: np.ndarray) -> np.ndarray:
        """Row energies ``(k, m)`` of the unit-scaled populations ``unit (k, m, d)`` of replicas ``idx``: one
        teacher and one student call for the whole stack, or per replica once some have stopped. The batched
        engine keeps its populations in float32, the networks' precision (scipy's are float64)."""
        X = self._rows(unit)
        k, m = X.shape[:2]
        if k == len(self.seeds):
            x = torch.from_numpy(X).to(self.device).reshape(k, m, *self.input_shape)
            t = self.teacher.predict(x).to("cpu", torch.float64).numpy()
            s = self.student.predict(x).to("cpu", torch.float64).numpy()
        else:
            t = np.stack([replica_predict(self.teacher, int(r), X[j], self.input_shape) for j, r in enumerate(idx)])
            s = np.stack([replica_predict(self.student, int(r), X[j], self.input_shape) for j, r in enumerate(idx)])
        return row_energies(self.objective, t, s, y, X.astype(np.float64) if self.objective.l1 else None)

    def _draw_step(self, n_rep: int, m: int):
        """A step's random draws for every replica, each from its own stream (so a replica's numbers never
        depend on its company), for all generations at once (two calls per replica and step, not four per
        generation; draws of generations after an early stop go unused): per generation the mutation factor
        F ``(R, G)``, each row's 4 partners ``(R, G, m, 4)`` and the crossover mask ``(R, G, m, d)`` (with
        its forced coordinate), from ``d + 5`` float32 uniforms per row."""
        G, d = self.generations, self.d
        scale = np.empty((n_rep, G))
        u = np.empty((n_rep, G, m, d + 5), dtype=np.float32)
        for r in range(n_rep):
            g = self.rngs[r]
            scale[r] = g.uniform(*sorted(self.mutation), size=G) if isinstance(self.mutation, tuple) else self.mutation
            g.random(dtype=np.float32, out=u[r])
        fill = np.minimum(np.floor(u[..., d].astype(np.float64) * d).astype(np.int64), d - 1)
        return scale, partners_from_uniforms(u[..., d + 1:]), crossover_mask(u[..., :d] < self.recombination, fill)

    def _trials(self, pop: np.ndarray, idx: np.ndarray, scale, partners, take) -> np.ndarray:
        """The trial populations of replicas ``idx`` (``pop`` and this generation's draws are theirs), inside
        the unit cube: best2bin, then scipy's ``_ensure_constraint`` (coordinates outside [0, 1] redrawn
        uniformly, from each replica's stream)."""
        trial = best2bin_trials(pop, scale, partners, take)
        out = np.flatnonzero((trial > 1) | (trial < 0))  # C order, replica by replica, as scipy's mask
        if len(out):
            cuts = np.searchsorted(out, np.arange(len(trial) + 1) * trial[0].size)
            counts = np.diff(cuts)
            trial.reshape(-1)[out] = np.concatenate([self.rngs[int(idx[j])].uniform(size=int(counts[j]))
                                                     for j in np.flatnonzero(counts)])
        return trial

    @staticmethod
    def _promote(pop: np.ndarray, energy: np.ndarray) -> None:
        """Swap each population's lowest energy into row 0, in place (scipy's _promote_lowest_energy)."""
        rows, best = np.arange(len(pop)), np.argmin(energy, axis=1)
        e0, p0 = energy[:, 0].copy(), pop[:, 0].copy()
        energy[:, 0], pop[:, 0] = energy[rows, best], pop[rows, best]
        energy[rows, best], pop[rows, best] = e0, p0

    def evolve(self, start: np.ndarray, y: np.ndarray) -> np.ndarray:
        """All replicas' differential evolutions of one step at once: ``start (R, m, d)`` rows of the box's
        space (clipped into it), targets ``y`` broadcastable to ``(R, m)``; returns the final populations
        ``(R, m, d)`` (best row first) and appends each replica's generations to ``generations_run``."""
        n_rep, m, _ = start.shape
        y = np.asarray(y, dtype=np.float64)
        y = np.full((n_rep, 1), float(y)) if y.ndim == 0 else y.reshape(n_rep, -1)
        draws = self._draw_step(n_rep, m)
        pop = np.clip((start - self._mid) * self._recip + 0.5, 0, 1).astype(np.float32)
        everyone = np.arange(n_rep)
        energy = self._energies(pop, y, everyone)
        self._promote(pop, energy)
        active, nit = np.ones(n_rep, dtype=bool), np.zeros(n_rep, dtype=np.int64)
        for gen in range(self.generations):
            idx = everyone if active.all() else np.flatnonzero(active)
            whole = len(idx) == n_rep
            p, e = (pop, energy) if whole else (pop[idx], energy[idx])
            trial = self._trials(p, idx, *(a[:, gen] if whole else a[idx, gen] for a in draws))
            e_trial = self._energies(trial, y if whole else y[idx], idx)
            accept = e_trial <= e  # deferred updating: every trial against its parent, then the best to row 0
            p[accept], e[accept] = trial[accept], e_trial[accept]
            self._promote(p, e)
            if not whole:
                pop[idx], energy[idx] = p, e
            nit[idx] = gen + 1
            done = np.std(e, axis=1) <= self.tol * np.abs(np.mean(e, axis=1))  # scipy's converged() (atol 0)
            active[idx[done]] = False
            if not active.any():
                break
        self.generations_run.extend(int(n) for n in nit)
        return self._rows(pop)  # the rows the networks scored

    def sample(self, m: int) -> torch.Tensor:
        """The final populations ``(R, m, *input_shape)``, float32."""
        if m < MIN_POPULATION:
            raise ConfigError(f"method={self.name} needs at least {MIN_POPULATION} rows per batch (scipy's smallest "
                              f"population), got {m}: set batch_size={MIN_POPULATION} or more")
        n_rep = len(self.seeds)
        start = self.base(m).reshape(n_rep, m, self.d).to("cpu", torch.float64).numpy()
        y = self.objective.draw_target(self.targets, m)
        y = np.zeros((n_rep, m)) if y is None else y.to(torch.float64).numpy()
        if self.engine == "batched":
            out = self.evolve(start, y[:, :1] if self.objective.y_per == "batch" else y)
        else:
            out = np.stack([self.solve(r, start[r], float(y[r, 0]) if self.objective.y_per == "batch" else y[r])
                            for r in range(n_rep)])
        return torch.from_numpy(out).to(self.device, torch.float32).reshape(n_rep, m, *self.input_shape)
