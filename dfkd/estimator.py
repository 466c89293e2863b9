"""Distil your own regressor: :class:`DistilledRegressor`, a scikit-learn estimator over the suite's engine.

    from dfkd import DistilledRegressor
    est = DistilledRegressor(teacher=my_model, input_bounds=[(0, 1)] * 8, method="direct", epochs=200)
    est.fit()                        # data-free, from the box (or input_moments=(mean, std))
    est.fidelity()                   # student vs teacher on probe sets; parameter counts; latency
    est.export("student.onnx")       # raw features in; standardisation folded in; parity checked

The training is :func:`dfkd.engine.distill.distill` (one replica, seed ``random_state``), the teacher an adapter of
:mod:`dfkd.engine.user_teachers`, the method built from ``conf/method/<method>.yaml`` as the cells build theirs
(``method="de"`` is ``conf/method/de_tabular.yaml``: eq. 5's objective, the batched engine). Inputs are
standardised (from X, else the moments, else the box: mid-point and the uniform's std) and so are the teacher's
outputs (from its answers on the probe rows); the student learns in those units and ``student_`` folds both back,
so it takes raw features and returns raw predictions. The engine keeps the student of the best validation RMSE
against the teacher on probe rows (the box's uniform, the moments' Gaussian, X's rows when given).
"""

from __future__ import annotations

import io
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted, validate_data
from torch import nn

from dfkd.core import rng
from dfkd.core.paths import CONF_DIR
from dfkd.core.progress import bar_resume, progress_bar, student_progress
from dfkd.data.context import Context
from dfkd.data.real import RealRows
from dfkd.data.sampler import NormalSampler
from dfkd.data.split import Split
from dfkd.engine.alpha import SCHEDULES, AlphaSchedule
from dfkd.engine.distill import StudentConfig, distill
from dfkd.engine.user_teachers import (Scaling, UniformSampler, engine_teacher, fingerprint, load_teacher_file,
                                       parameter_count, raw_predictions, teacher_kind, teacher_width)
from dfkd.errors import ConfigError, DfkdError
from dfkd.records import atomic_write_bytes
from dfkd.settings import method_from_yaml

#: Method names of the estimator that read another yaml than conf/method/<name>.yaml.
METHOD_ALIASES = {"de": "de_tabular"}
#: Methods a black-box teacher can use.
BLACK_BOX_METHODS = ("de", "random")
#: Largest student-vs-file difference an export may show.
PARITY_TOL = 1e-5
EXPORT_FORMATS = ("onnx", "torchscript")


class InputError(ConfigError, ValueError):
    """A bad argument to :class:`DistilledRegressor` (a ConfigError for the commands, a ValueError for
    scikit-learn): one line naming the problem and the fix."""


def method_config(name) -> dict:
    """The method yaml ``conf/method/<name>.yaml`` as a dict (``defaults`` of other method yamls merged), or a dict
    given directly (with ``_target_``)."""
    if isinstance(name, dict):
        return dict(name)
    import yaml

    name = str(name)
    path = CONF_DIR / "method" / f"{METHOD_ALIASES.get(name, name)}.yaml"
    if not path.is_file():
        known = sorted({p.stem for p in (CONF_DIR / "method").glob("*.yaml")} | set(METHOD_ALIASES))
        raise InputError(f"unknown method '{name}': choose one of {', '.join(known)}")
    raw = yaml.safe_load(path.read_text()) or {}
    out: dict = {}
    for entry in raw.pop("defaults", []) or []:
        if entry != "_self_":
            out.update(method_config(str(entry)))
    out.update(raw)
    out["name"] = name if name in METHOD_ALIASES else out.get("name", name)
    return out


def _pairs(bounds, d_hint=None):
    """``input_bounds`` -> ``(lo, hi)`` float64 arrays, checked (one (lo, hi) pair per feature, lo < hi)."""
    try:
        b = np.asarray(bounds, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(f"input_bounds must be one (lo, hi) pair per feature, e.g. [(0, 1), (-5, 5)]; got "
                         f"{bounds!r}") from None
    if b.ndim != 2 or b.shape[1] != 2 or b.shape[0] < 1:
        raise InputError(f"input_bounds must be one (lo, hi) pair per feature (shape (d, 2)), got shape {b.shape}")
    if not np.all(np.isfinite(b)):
        raise InputError("input_bounds must be finite numbers")
    bad = np.nonzero(b[:, 0] >= b[:, 1])[0]
    if bad.size:
        j = int(bad[0])
        raise InputError(f"input_bounds of feature {j} have lo >= hi ({b[j, 0]:g} >= {b[j, 1]:g}): every lo must be "
                         f"below its hi")
    if d_hint is not None and b.shape[0] != d_hint[0]:
        raise InputError(f"input_bounds has {b.shape[0]} pairs but {d_hint[1]} has {d_hint[0]} features: give one "
                         f"(lo, hi) pair per feature")
    return b[:, 0].copy(), b[:, 1].copy()


def _moments(moments, d_hint=None):
    """``input_moments`` -> ``(mean, std)`` float64 arrays (a (mean, std) pair or a dict with mean and std)."""
    if isinstance(moments, dict):
        if set(moments) != {"mean", "std"}:
            raise InputError(f"input_moments as a mapping needs exactly the keys mean and std, got {sorted(moments)}")
        moments = (moments["mean"], moments["std"])
    try:
        mean, std = (np.asarray(v, dtype=np.float64).reshape(-1) for v in moments)
    except (TypeError, ValueError):
        raise InputError(f"input_moments must be (mean, std), two sequences of one number per feature; got "
                         f"{moments!r}") from None
    if mean.shape != std.shape or mean.size < 1:
        raise InputError(f"input_moments: mean has {mean.size} entries and std {std.size}: give one each per feature")
    if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(std)) and np.all(std > 0)):
        raise InputError("input_moments: means must be finite and every std a finite number > 0")
    if d_hint is not None and mean.size != d_hint[0]:
        raise InputError(f"input_moments has {mean.size} features but {d_hint[1]} has {d_hint[0]}: give one mean and "
                         f"std per feature")
    return mean, std


def _finite(X, what="X"):
    if not np.all(np.isfinite(X)):
        rows, cols = np.nonzero(~np.isfinite(X))
        raise InputError(f"{what} contains NaN or infinity (row {int(rows[0])}, column {int(cols[0])}): remove or "
                         f"impute those rows first")


def _metrics(pred, ref) -> dict:
    err = np.asarray(pred, dtype=np.float64) - np.asarray(ref, dtype=np.float64)
    sst = float(np.sum((ref - np.mean(ref)) ** 2))
    sse = float(np.sum(err * err))
    return {"rmse": float(np.sqrt(np.mean(err * err))), "mae": float(np.mean(np.abs(err))),
            "max_abs": float(np.max(np.abs(err))), "r2": (1.0 - sse / sst) if sst > 0 else float("nan")}


class StudentNet(nn.Module):
    """The distilled student of raw features: ``Linear(d, h) -> tanh -> Linear(h, 1)``, the inputs' and the outputs'
    standardisation folded into the weights; ``forward(x (n, d)) -> (n,)``."""

    def __init__(self, w1, b1, w2, b2):
        super().__init__()
        self.hidden = nn.Linear(w1.shape[1], w1.shape[0])
        self.out = nn.Linear(w2.shape[1], 1)
        with torch.no_grad():
            self.hidden.weight.copy_(torch.as_tensor(w1, dtype=torch.float32))
            self.hidden.bias.copy_(torch.as_tensor(b1, dtype=torch.float32))
            self.out.weight.copy_(torch.as_tensor(w2, dtype=torch.float32).reshape(1, -1))
            self.out.bias.copy_(torch.as_tensor(b2, dtype=torch.float32).reshape(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.tanh(self.hidden(x))).squeeze(-1)

    def numpy_params(self) -> tuple:
        return tuple(t.detach().cpu().numpy() for t in (self.hidden.weight, self.hidden.bias, self.out.weight,
                                                       self.out.bias))


def _fold(params: dict, scaling: Scaling) -> tuple:
    """Standardised-unit MLP params (``nn.Linear`` layout) -> raw-unit ones (float64)."""
    w1 = params["w1"].double().numpy() / scaling.x_std[None, :]
    b1 = params["b1"].double().numpy() - w1 @ scaling.x_mean
    w2 = params["w2"].double().numpy() * scaling.y_std
    b2 = params["b2"].double().numpy() * scaling.y_std + scaling.y_mean
    return w1, b1, w2, b2


def _forward_np(params, X) -> np.ndarray:
    w1, b1, w2, b2 = (np.asarray(p, dtype=np.float64) for p in params)
    return (np.tanh(np.asarray(X, dtype=np.float64) @ w1.T + b1) @ w2.T + b2)[:, 0]


class _Plan:
    """What :meth:`DistilledRegressor._plan` checked and built, for :meth:`DistilledRegressor._train`."""


class DistilledRegressor(RegressorMixin, BaseEstimator):
    """A small MLP student distilled from ``teacher`` by the paper's methods, without (or with few) data.

    Args:
        teacher: a torch ``nn.Module`` or TorchScript module (white box: every method), a fitted scikit-learn
            regressor or any object with ``predict(X)``, or a function of rows ``f(X (n, d)) -> (n,)`` (black boxes:
            ``method="de"`` or ``"random"``), or the path of a ``.pt`` / ``.joblib`` file holding one. Raw features
            in, one number per row out.
        method: a ``conf/method/`` name (``direct``, ``random``, ``de``, ``generator``, ``tsm``, ``kd``, ...) or a
            method dict with ``_target_``.
        student_hidden: the student's hidden width.
        input_bounds: one ``(lo, hi)`` pair per feature: the box synthetic inputs are drawn from (uniformly) and
            kept in.
        input_moments: ``(mean, std)`` per feature: a Gaussian base distribution instead of a box.
        epochs, steps_per_epoch, batch_size (None: the paper's rule), lr: the student's budget (StudentConfig).
        alpha: the weight of the method's rows: ``decreasing``, ``increasing`` or a constant in [0, 1].
        random_state: the seed of every random stream (None: a fresh one per fit).
        device: ``auto`` (cuda when available), ``cpu`` or ``cuda[:N]``.
        start: fraction of the method's starting points drawn from X's rows when X is given (``auto``: 0.5 for
            methods that start from base points, none otherwise).
        probe_rows: synthetic validation rows labelled by the teacher (the student of the best RMSE on them is
            kept).
        verbose: show a progress bar.

    Attributes:
        student_: :class:`StudentNet` of raw features. n_features_in_, n_teacher_queries_ (all rows asked of the
        teacher, the probe rows included), history_ (per-epoch validation RMSE against the teacher in the target's
        units, losses, best epoch), teacher_kind_, teacher_fingerprint_, method_, input_bounds_, input_moments_.
    """

    def __init__(self, teacher=None, method="direct", student_hidden=50, input_bounds=None, input_moments=None,
                 epochs=200, alpha="decreasing", random_state=None, device="auto", steps_per_epoch=10,
                 batch_size=None, lr=1e-3, start="auto", probe_rows=1000, verbose=False):
        self.teacher = teacher
        self.method = method
        self.student_hidden = student_hidden
        self.input_bounds = input_bounds
        self.input_moments = input_moments
        self.epochs = epochs
        self.alpha = alpha
        self.random_state = random_state
        self.device = device
        self.steps_per_epoch = steps_per_epoch
        self.batch_size = batch_size
        self.lr = lr
        self.start = start
        self.probe_rows = probe_rows
        self.verbose = verbose

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.regressor_tags.poor_score = True  # it fits the teacher, not y
        tags.target_tags.required = False  # fit() without y (and without X) is the data-free case
        return tags

    # -- the teacher -------------------------------------------------------
    def _teacher(self):
        teacher = self.teacher
        if teacher is None:
            raise InputError("teacher is None: give a torch module, a TorchScript or joblib file, a fitted "
                             "scikit-learn regressor or a function of rows")
        try:
            if isinstance(teacher, (str, Path)):
                teacher = load_teacher_file(teacher)
            teacher_kind(teacher)
        except DfkdError as exc:
            raise InputError(str(exc)) from None
        return teacher

    # -- fit ---------------------------------------------------------------
    def fit(self, X=None, y=None):
        """Distil the teacher: data-free (no X), from unlabelled rows X, or data-scarce (X and y)."""
        self._train(self._plan(X, y), progress=bool(self.verbose))
        return self

    def _plan(self, X=None, y=None) -> _Plan:
        """Check every argument and build the engine's objects; trains nothing and writes nothing."""
        p = _Plan()
        p.teacher = self._teacher()
        p.kind = teacher_kind(p.teacher)
        if y is not None and X is None:
            raise InputError("y was given without X: pass the rows X that y labels")
        method_cfg = method_config(self.method)
        p.method_name = str(method_cfg.get("name", self.method))
        try:
            p.method = method_from_yaml(method_cfg)
        except DfkdError as exc:
            raise InputError(str(exc)) from None
        if p.kind != "torch" and p.method.needs_gradients:
            raise InputError(f"method '{p.method_name}' needs the teacher's gradients, but a {p.kind} teacher is a "
                             f"black box: use method='de' (differential evolution) or method='random'")
        if X is not None:
            if y is not None:
                X, y = validate_data(self, X, y, y_numeric=True, ensure_all_finite=False, dtype=np.float64)
                _finite(y.reshape(-1, 1), "y")
            else:
                X = validate_data(self, X, ensure_all_finite=False, dtype=np.float64)
            _finite(X)
            d, source = X.shape[1], (X.shape[1], "X")
        else:
            source = None
        bounds = None if self.input_bounds is None else _pairs(self.input_bounds, source)
        if source is None and bounds is not None:
            source = (bounds[0].size, "input_bounds")
        moments = None if self.input_moments is None else _moments(self.input_moments, source)
        if source is None and moments is not None:
            source = (moments[0].size, "input_moments")
        if source is None:
            raise InputError("nothing tells the inputs' range: give input_bounds=[(lo, hi), ...], "
                             "input_moments=(mean, std) or rows X to fit")
        d = source[0]
        width = teacher_width(p.teacher)
        if width is not None and width != d:
            raise InputError(f"{source[1]} has {d} features but the teacher takes {width}: give one "
                             f"{'(lo, hi) pair' if source[1] == 'input_bounds' else 'column'} per teacher feature")
        if p.method.owns_loss and X is None:
            raise InputError(f"method '{p.method_name}' learns from real rows: pass X (and y) to fit, or use a "
                             f"data-free method (direct, random, de)")
        if X is not None and X.shape[0] >= 2:
            sd = X.std(0)
            x_mean, x_std = X.mean(0), np.where(sd > 0, sd, 1.0)
        elif moments is not None:
            x_mean, x_std = moments
        elif bounds is not None:
            x_mean, x_std = (bounds[0] + bounds[1]) / 2, (bounds[1] - bounds[0]) / math.sqrt(12.0)
        else:
            x_mean, x_std = X.mean(0), np.ones(d)
        p.X, p.y, p.d, p.bounds, p.moments = X, y, d, bounds, moments
        scaling = Scaling(x_mean, x_std)
        if bounds is not None:
            sampler = UniformSampler(scaling.standard(bounds[0]), scaling.standard(bounds[1]))
        else:
            sampler = NormalSampler((d,))
            if moments is not None and X is not None:  # the moments' Gaussian in X's units
                sampler = _ShiftedNormal(scaling.standard(moments[0]), moments[1] / x_std)
        p.context = Context((d,), sampler)
        seed = self.random_state
        p.seed = int(seed) if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool) else \
            int(check_random_state(seed).randint(0, 2**31 - 1))
        # validation rows: X's (if any) and probe_rows draws of the base distribution, labelled by the teacher
        n_probe = int(self.probe_rows)
        if n_probe < 1:
            raise InputError(f"probe_rows must be >= 1, got {self.probe_rows!r}")
        z = sampler(rng.generators([p.seed], "own_probe"), n_probe)[0].double().numpy()
        if X is not None:
            z = np.concatenate([scaling.standard(X), z])
        try:
            t_raw = raw_predictions(p.teacher, scaling.raw(z))
        except DfkdError as exc:
            raise InputError(str(exc)) from None
        except Exception as exc:  # noqa: BLE001 - the user's teacher failed on rows of this width
            raise InputError(f"the teacher failed on probe rows of {d} features ({type(exc).__name__}: "
                             f"{' '.join(str(exc).split())[:200]}): check the number of features") from None
        _finite(t_raw.reshape(-1, 1), "the teacher's answers on the probe rows")
        sd = float(t_raw.std())
        scaling.y_mean, scaling.y_std = float(t_raw.mean()), (sd if sd > 0 else 1.0)
        p.probe_queries = int(z.shape[0])
        t_z = (t_raw - scaling.y_mean) / scaling.y_std
        zf, tf = z.astype(np.float32), t_z.astype(np.float32)
        p.split = Split(zf, tf, zf, tf, zf, tf)
        p.scaling = scaling
        p.device = self._device()
        p.engine_teacher = engine_teacher(p.teacher, scaling, p.device)
        p.real = None
        if X is not None:
            n = X.shape[0]
            labels = (y - scaling.y_mean) / scaling.y_std if y is not None else t_z[:n]
            p.real = RealRows(torch.as_tensor(scaling.standard(X), dtype=torch.float32)[None].to(p.device),
                              torch.as_tensor(labels, dtype=torch.float32)[None].to(p.device))
            start = self.start
            if start == "auto":
                start = 0.5 if (p.method.draws_base and not p.method.owns_loss and not p.method.start) else None
            if start is not None:
                if isinstance(start, bool) or not isinstance(start, (int, float)) or not 0 <= start <= 1:
                    raise InputError(f"start must be 'auto' or a fraction in [0, 1], got {start!r}")
                if start and not p.method.draws_base:
                    raise InputError(f"method '{p.method_name}' does not start from base points: use start='auto' "
                                     f"or start=0")
                p.method.start = float(start)
        p.alpha = self._alpha()
        try:
            p.cfg = StudentConfig(hidden=int(self.student_hidden), lr=float(self.lr), epochs=int(self.epochs),
                                  steps_per_epoch=int(self.steps_per_epoch), batch_size=int(self.batch_size or 0))
        except (TypeError, ValueError) as exc:
            raise InputError(f"student_hidden, epochs, steps_per_epoch, batch_size and lr must be numbers ({exc})") \
                from None
        if p.cfg.hidden < 1 or p.cfg.epochs < 0 or p.cfg.steps_per_epoch < 1:
            raise InputError("student_hidden and steps_per_epoch must be >= 1 and epochs >= 0")
        try:  # a dry bind, so that what the method refuses (its settings, the box) fails here, before any writing
            p.method.set_real(p.real)
            p.method.bind(p.engine_teacher, p.cfg.build((d,), rng.generators([p.seed], "student_init"), p.device),
                          [p.seed], p.device, p.context)
        except DfkdError as exc:
            raise InputError(str(exc)) from None
        return p

    def _device(self) -> str:
        device = str(self.device)
        if device == "auto":
            return "cuda" if torch.cuda.is_available() else "cpu"
        if device != "cpu" and not device.startswith("cuda"):
            raise InputError(f"device must be auto, cpu or cuda[:N], got {device!r}")
        return device

    def _alpha(self) -> AlphaSchedule:
        a = self.alpha
        try:
            if isinstance(a, str) and a in SCHEDULES and a != "constant":
                return AlphaSchedule(a)
            return AlphaSchedule("constant", float(a))
        except (TypeError, ValueError, ConfigError):
            raise InputError(f"alpha must be 'decreasing', 'increasing' or a number in [0, 1], got {a!r}") from None

    def _train(self, p: _Plan, progress: bool = False, checkpoint=None, log=None):
        """Run the engine on a plan and set the fitted attributes."""
        bar = progress_bar(progress, p.cfg.epochs, "distil") if p.cfg.epochs else None
        if checkpoint is not None and bar is not None:
            checkpoint.on_resume = bar_resume(bar)
        try:
            if p.cfg.epochs:
                results, traces, student, best_flat = distill(
                    p.engine_teacher, [p.split], [p.seed], p.method, p.alpha, p.cfg, device=p.device,
                    progress=student_progress(bar), context=p.context, checkpoint=checkpoint, real=p.real)
            else:  # the untrained student (a baseline)
                results, traces = [{"best_epoch": -1}], {"val_rmse": torch.zeros(0, 1), "loss_g": torch.zeros(0, 1),
                                                          "loss_p": torch.zeros(0, 1)}
                student = p.cfg.build((p.d,), rng.generators([p.seed], "student_init"), p.device)
                best_flat = student.flat
        finally:
            if bar is not None:
                bar.close()
        init = p.cfg.build((p.d,), rng.generators([p.seed], "student_init"), "cpu")
        self._init_params = _fold(init.replica_params(0), p.scaling)
        self.student_ = StudentNet(*_fold(student.replica_params(0, best_flat), p.scaling))
        self.n_features_in_ = p.d
        self.teacher_kind_ = p.kind
        self.method_ = p.method_name
        self.input_bounds_ = None if p.bounds is None else np.stack(p.bounds, 1)
        self.input_moments_ = None if p.moments is None else (p.moments[0].copy(), p.moments[1].copy())
        self.x_mean_, self.x_scale_ = p.scaling.x_mean.copy(), p.scaling.x_std.copy()
        self.y_mean_, self.y_scale_ = p.scaling.y_mean, p.scaling.y_std
        self.n_teacher_queries_ = int(p.engine_teacher.total_queries + p.probe_queries)
        self.teacher_fingerprint_ = fingerprint(p.teacher, p.d)
        self.random_state_ = p.seed
        self.history_ = {
            "val_rmse": (traces["val_rmse"][:, 0] * p.scaling.y_std).tolist(),
            "loss_g": traces["loss_g"][:, 0].tolist(), "loss_p": traces["loss_p"][:, 0].tolist(),
            "best_epoch": int(results[0]["best_epoch"]),
            "units": "val_rmse in the target's units (vs the teacher on the probe rows); losses standardised"}
        return self

    # -- use ---------------------------------------------------------------
    def _check_X(self, X) -> np.ndarray:
        check_is_fitted(self, "student_")
        X = validate_data(self, X, reset=False, ensure_all_finite=False, dtype=np.float64)
        _finite(X)
        return X

    def predict(self, X) -> np.ndarray:
        """The student's predictions for raw rows X (float64)."""
        X = self._check_X(X)
        return _forward_np(self.student_.numpy_params(), X)

    def _probe_sets(self, X=None, n: int = 2000) -> dict:
        gen = np.random.default_rng(self.random_state_ + 1)
        sets = {}
        if self.input_bounds_ is not None:
            lo, hi = self.input_bounds_[:, 0], self.input_bounds_[:, 1]
            sets["uniform"] = lo + (hi - lo) * gen.random((n, lo.size))
        if self.input_moments_ is not None:
            mean, std = self.input_moments_
            sets["gaussian"] = mean + std * gen.standard_normal((n, mean.size))
        if not sets and X is None:  # fitted on X only and asked without it: the Gaussian of X's mean and std
            sets["gaussian_fit"] = self.x_mean_ + self.x_scale_ * gen.standard_normal((n, self.x_mean_.size))
        if X is not None:
            sets["X"] = X
        return sets

    def fidelity(self, X=None, y=None) -> dict:
        """Student vs teacher (RMSE, MAE, max abs error, R^2 of the student against the teacher's answers) on the
        probe sets: ``uniform`` (in the bounds), ``gaussian`` (of the moments), ``X``; ``untrained_rmse`` is an
        untrained student's RMSE there. With y also ``truth``: teacher's and student's metrics against y. Plus
        parameter counts and latency per row (seconds; median of 3 passes over the largest probe set)."""
        check_is_fitted(self, "student_")
        if y is not None and X is None:
            raise InputError("y was given without X: pass the rows X that y labels")
        if X is not None:
            X = self._check_X(X)
            if y is not None:
                y = np.asarray(y, dtype=np.float64).reshape(-1)
                if y.shape[0] != X.shape[0]:
                    raise InputError(f"y has {y.shape[0]} values for {X.shape[0]} rows of X")
        teacher = self._teacher()
        params = self.student_.numpy_params()
        out = {"probe_sets": {}}
        for name, rows in self._probe_sets(X).items():
            t = raw_predictions(teacher, rows)
            s = _forward_np(params, rows)
            entry = dict(_metrics(s, t), rows=int(rows.shape[0]),
                         untrained_rmse=_metrics(_forward_np(self._init_params, rows), t)["rmse"])
            if name == "X" and y is not None:
                entry["truth"] = {"teacher": _metrics(t, y), "student": _metrics(s, y)}
            out["probe_sets"][name] = entry
        rows = max(self._probe_sets(X).values(), key=len)

        def latency(fn) -> float:
            times = []
            for _ in range(3):
                t0 = time.perf_counter()
                fn(rows)
                times.append(time.perf_counter() - t0)
            return float(np.median(times) / rows.shape[0])

        module = self.student_
        with torch.no_grad():
            student_latency = latency(lambda r: module(torch.as_tensor(r, dtype=torch.float32)))
        out["parameters"] = {"student": int(sum(p.numel() for p in module.parameters())),
                             "teacher": parameter_count(teacher)}
        out["latency_s_per_row"] = {"teacher": latency(lambda r: raw_predictions(teacher, r)),
                                    "student": student_latency}
        out["n_teacher_queries"] = self.n_teacher_queries_
        return out

    # -- export ------------------------------------------------------------
    def metadata(self, fidelity: dict | None = None) -> dict:
        """What an export carries: features, bounds, moments, method, teacher fingerprint, versions, fidelity."""
        import sklearn

        check_is_fitted(self, "student_")
        names = getattr(self, "feature_names_in_", None)
        versions = {"dfkd": _dfkd_version(), "torch": str(torch.__version__), "numpy": str(np.__version__),
                    "scikit-learn": str(sklearn.__version__)}
        for mod in ("onnx", "onnxruntime"):
            try:
                versions[mod] = str(__import__(mod).__version__)
            except ImportError:
                pass
        fid = fidelity if fidelity is not None else self.fidelity()
        summary = {k: {m: v[m] for m in ("rmse", "mae", "max_abs", "r2")} for k, v in fid["probe_sets"].items()}
        meta = {
            "features": [str(n) for n in names] if names is not None else [f"x{j}" for j in range(self.n_features_in_)],
            "bounds": None if self.input_bounds_ is None else self.input_bounds_.tolist(),
            "moments": None if self.input_moments_ is None else {"mean": self.input_moments_[0].tolist(),
                                                                  "std": self.input_moments_[1].tolist()},
            "method": self.method_, "teacher_kind": self.teacher_kind_, "teacher_fingerprint": self.teacher_fingerprint_,
            "student_hidden": int(self.student_.hidden.out_features), "random_state": self.random_state_,
            "n_teacher_queries": self.n_teacher_queries_, "versions": versions, "fidelity": summary,
            "input": "raw features (standardisation folded in), float32 (n, d)", "output": "raw predictions (n,)"}
        return json.loads(json.dumps(meta))  # plain types only (a weights_only torch.load reads it back)

    def export(self, path, format: str = "onnx", fidelity: dict | None = None) -> dict:
        """Write the student to ``path`` as ONNX or TorchScript, with :meth:`metadata` inside, after checking that
        the file's outputs equal the student's (max abs difference <= 1e-5 on probe rows; else nothing is written).

        Returns:
            ``{"path", "format", "max_abs_diff", "metadata"}``.

        Raises:
            InputError: an unknown format, onnx missing, a path that cannot be written, or a parity failure.
        """
        check_is_fitted(self, "student_")
        if format not in EXPORT_FORMATS:
            raise InputError(f"format must be 'onnx' or 'torchscript', got {format!r}")
        if format == "onnx" and not has_onnx():
            raise InputError("format='onnx' needs onnx and onnxruntime: pip install 'dfkd[onnx]' (or use "
                             "format='torchscript')")
        path = Path(path)
        check_export_path(path)
        meta = self.metadata(fidelity)
        probe = np.concatenate(list(self._probe_sets(None, 256).values())).astype(np.float32)
        with torch.no_grad():
            want = self.student_(torch.as_tensor(probe)).numpy()
        data, got = (_onnx_bytes if format == "onnx" else _torchscript_bytes)(self.student_, meta, probe)
        diff = float(np.max(np.abs(np.asarray(got, dtype=np.float64) - want)))
        if not diff <= PARITY_TOL:
            raise InputError(f"the exported {format} file's outputs differ from the student's by {diff:.3g} "
                             f"(> {PARITY_TOL:g}): nothing written")
        try:
            atomic_write_bytes(path, data)
        except OSError as exc:
            raise InputError(f"cannot write the export to {path} ({exc.strerror or exc}): choose a writable path") \
                from None
        return {"path": str(path), "format": format, "max_abs_diff": diff, "metadata": meta}


class _ShiftedNormal(NormalSampler):
    """N(mean, diag(std^2)) in standardised units (the moments' Gaussian when X sets the standardisation)."""

    def __init__(self, mean, std):
        super().__init__((len(mean),))
        self.mean = torch.as_tensor(mean, dtype=torch.float32)
        self.sd = torch.as_tensor(std, dtype=torch.float32)
        self.kind = "shifted_normal"  # not N(0, I): de's box in standard deviations does not apply

    def __call__(self, gens, m, device="cpu"):
        z = self.standard(gens, m, device)
        return z.mul_(self.sd.to(z.device)).add_(self.mean.to(z.device))


def _dfkd_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("dfkd")
    except PackageNotFoundError:
        return "unknown"


def has_onnx() -> bool:
    """Whether the optional onnx and onnxruntime packages (``pip install 'dfkd[onnx]'``) can be imported."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def check_export_path(path: Path) -> None:
    """Fail (one line) unless ``path`` can be written: its folder exists (or can be made) and is writable, and the
    path is not a folder."""
    import os

    path = Path(path)
    if path.is_dir():
        raise InputError(f"export path {path} is a folder: give a file name, e.g. {path / 'student.onnx'}")
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise InputError(f"cannot write the export to {path}: {folder} is not a writable folder; choose another path")


def _onnx_bytes(student: StudentNet, meta: dict, probe: np.ndarray):
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    w1, b1, w2, b2 = student.numpy_params()
    inits = [numpy_helper.from_array(np.asarray(a, dtype=np.float32), name) for a, name in
             ((w1, "w1"), (b1, "b1"), (w2, "w2"), (b2, "b2"))]
    inits.append(numpy_helper.from_array(np.asarray([1], dtype=np.int64), "axes"))
    nodes = [helper.make_node("Gemm", ["x", "w1", "b1"], ["z1"], transB=1),
             helper.make_node("Tanh", ["z1"], ["a1"]),
             helper.make_node("Gemm", ["a1", "w2", "b2"], ["y2"], transB=1),
             helper.make_node("Squeeze", ["y2", "axes"], ["y"])]
    d = w1.shape[1]
    graph = helper.make_graph(nodes, "dfkd_student", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", d])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n"])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="dfkd")
    model.ir_version = 8
    model.doc_string = "dfkd distilled student: raw features in, raw predictions out"
    helper.set_model_props(model, {"dfkd_metadata": json.dumps(meta, sort_keys=True)})
    onnx.checker.check_model(model)
    data = model.SerializeToString()
    sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    return data, sess.run(["y"], {"x": probe})[0]


def _torchscript_bytes(student: StudentNet, meta: dict, probe: np.ndarray):
    import copy

    scripted = torch.jit.script(copy.deepcopy(student).cpu().eval())
    buf = io.BytesIO()
    torch.jit.save(scripted, buf, _extra_files={"dfkd_metadata.json": json.dumps(meta, sort_keys=True)})
    data = buf.getvalue()
    back = torch.jit.load(io.BytesIO(data), map_location="cpu")
    with torch.no_grad():
        got = back(torch.as_tensor(probe)).numpy()
    return data, got


def read_export_metadata(path) -> dict:
    """The metadata an :meth:`DistilledRegressor.export` file carries (ONNX or TorchScript)."""
    path = Path(path)
    if path.suffix == ".onnx":
        import onnx

        model = onnx.load(str(path))
        return json.loads({p.key: p.value for p in model.metadata_props}["dfkd_metadata"])
    files = {"dfkd_metadata.json": ""}
    torch.jit.load(str(path), map_location="cpu", _extra_files=files)
    return json.loads(files["dfkd_metadata.json"])
