"""Data-free distillation of a stack of students (paper Algorithm 1).

Replica r is the student for seed r, with its own teacher, split, student
initialisation and random streams. Per epoch e (of t_max) and alpha a = a(e):
the method may update its state, then for each of n_s steps a batch x_g of m
synthetic rows (if a > 0) and x_p of m rows from the dataset's base
distribution (if a < 1; N(0, I) for tables) are labelled by the teacher and the
student takes one RMSprop step on
``a * mean L(T(x_g) - S(x_g)) + (1 - a) * mean L(T(x_p) - S(x_p))`` with L the
squared error (tables) or Log-Cosh (MNIST).
After each epoch the student is validated against the true validation targets
and its best copy kept (the published protocol; see SPEC section 6). Skipping
a zero-weight batch and never differentiating the teacher's weights changes no
result (SPEC section 7).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch

from dfkd.engine import rng
from dfkd.engine.alpha import AlphaSchedule
from dfkd.engine.optim import RMSpropStack
from dfkd.engine.teacher import mse_per_replica, stack_splits
from dfkd.errors import ConfigError
from dfkd.methods.base import Context, Method, default_context
from dfkd.methods.objective import logcosh
from dfkd.models import build_stack

LOSSES = ("mse", "logcosh")


@dataclass(frozen=True)
class StudentConfig:
    """The student and its training budget."""

    hidden: int = 50
    lr: float = 1e-3
    weight_decay: float = 1e-5
    epochs: int = 2000
    steps_per_epoch: int = 10
    batch_size: int = 0  # 0: the paper's rule (50 when alpha mixes both sets, else 100)
    # Added for MNIST (issue 3); at their defaults they leave the tabular protocol and its hashes unchanged.
    arch: str = "mlp"  # model module dfkd/models/<arch>.py; mlp uses `hidden`, others `arch_params`
    loss: str = "mse"  # student loss on T(x) - S(x): mse | logcosh
    arch_params: dict = field(default_factory=dict)
    eval_chunk: int = 0  # rows per forward pass when validating/testing; 0 = all at once

    #: Fields that enter a record's config hash only when set away from their default.
    LATE_FIELDS = ("arch", "loss", "arch_params", "eval_chunk")

    def __post_init__(self):
        if self.loss not in LOSSES:
            raise ConfigError(f"student loss '{self.loss}' unknown: use one of {', '.join(LOSSES)}")

    def build(self, input_shape, generators, device="cpu"):
        """A fresh student stack for inputs of ``input_shape``, replica r from ``generators[r]``."""
        params = {"hidden": self.hidden} if self.arch == "mlp" else dict(self.arch_params)
        return build_stack(self.arch, input_shape, generators, device, **params)


def predict_rows(stack, x: torch.Tensor, flat: torch.Tensor | None = None, chunk: int = 0) -> torch.Tensor:
    """``stack.predict`` over ``(R, n, ...)`` rows, ``chunk`` rows at a time (0: all at once)."""
    n = x.shape[1]
    if not chunk or n <= chunk:
        return stack.predict(x, flat)
    return torch.cat([stack.predict(x[:, i:i + chunk], flat) for i in range(0, n, chunk)], 1)


def student_loss(diff: torch.Tensor, loss: str):
    """Per-row loss of ``diff = S - T`` and its derivative as ``slope * factor``.

    Returns ``(diff^2, diff, 2)`` for mse or ``(logcosh(diff), tanh(diff), 1)`` for logcosh.
    """
    if loss == "mse":
        return diff * diff, diff, 2.0
    return logcosh(diff), torch.tanh(diff), 1.0


def distill(teacher, splits, seeds: list[int], method: Method, alpha: AlphaSchedule,
            cfg: StudentConfig = StudentConfig(), device="cpu", progress=None, context: Context | None = None,
            keep_samples: int = 0):
    """Distil one student per seed from the corresponding teacher replica.

    Args:
        teacher: frozen teachers (a model stack, or a black box answering ``predict``), replica r for ``seeds[r]``.
        splits: per-seed :class:`~dfkd.data.split.Split` (validation and test use real data).
        method: an unbound :class:`~dfkd.methods.base.Method`.
        progress: optional callable ``(epoch, best_val_rmse (R,) tensor)`` called after every epoch.
        context: the dataset's input shape and base distribution; default tabular N(0, I) of the teacher's width.
        keep_samples: if > 0, after training draw that many synthetic inputs per replica from the method
            (with the final student) and return them with the teacher's predictions, for figures.

    Returns:
        ``(results, traces)``: per replica a dict of metrics; traces is a dict of
        ``(epochs, R)`` CPU tensors: ``val_rmse``, ``loss_g`` (student loss on x_g,
        mean over the epoch's steps; NaN where a = 0) and ``loss_p``; with ``keep_samples`` also
        ``synthetic_x (R, k, *input_shape)`` and ``synthetic_t (R, k)``.
    """
    t0 = time.perf_counter()
    device = torch.device(device)
    data = stack_splits(splits, device)
    context = context if context is not None else default_context(teacher)
    n_rep = len(seeds)
    m = cfg.batch_size or alpha.default_batch_size()
    student = cfg.build(context.input_shape, rng.generators(seeds, "student_init"), device=device)
    opt = RMSpropStack(student.flat, cfg.lr, cfg.weight_decay)
    noise = rng.generators(seeds, "noise", device)
    if hasattr(teacher, "freeze"):
        teacher.freeze()
    method.bind(teacher, student, seeds, device, context)
    method.set_noise(noise)
    train_kw = {"train": True} if getattr(student, "has_dropout", False) else {}

    best_flat = student.flat.clone()
    best_mse = torch.full((n_rep,), math.inf, device=device)
    best_epoch = torch.zeros(n_rep, dtype=torch.long, device=device)
    trace_val = torch.empty(cfg.epochs, n_rep, device=device)
    trace_g = torch.full((cfg.epochs, n_rep), math.nan, device=device)
    trace_p = torch.full((cfg.epochs, n_rep), math.nan, device=device)

    for epoch in range(cfg.epochs):
        a = alpha(epoch, cfg.epochs)
        if a > 0:
            method.start_epoch(epoch, m)
        sum_g = torch.zeros(n_rep, device=device)
        sum_p = torch.zeros(n_rep, device=device)
        for _ in range(cfg.steps_per_epoch):
            parts, weights = [], []
            if a > 0:
                parts.append(method.sample(m))
                weights.append(a / m)
            if a < 1:
                parts.append(context.sampler(noise, m, device))
                weights.append((1 - a) / m)
            x = parts[0] if len(parts) == 1 else torch.cat(parts, 1)
            t = teacher.predict(x)
            s, cache = student.forward(x, keep=True, **train_kw)
            diff = s.squeeze(-1) - t
            sq, slope, factor = student_loss(diff, cfg.loss)
            if len(parts) == 1:
                g_out = slope * (factor * weights[0])
                (sum_g if a > 0 else sum_p).add_(sq.mean(1))
            else:
                w = torch.cat([torch.full((m,), weights[0], device=device), torch.full((m,), weights[1], device=device)])
                g_out = slope * (factor * w)
                sum_g.add_(sq[:, :m].mean(1))
                sum_p.add_(sq[:, m:].mean(1))
            opt.step(student.backward(cache, g_out)[0])
        if a > 0:
            trace_g[epoch] = sum_g / cfg.steps_per_epoch
        if a < 1:
            trace_p[epoch] = sum_p / cfg.steps_per_epoch
        val = mse_per_replica(predict_rows(student, data["X_val"], chunk=cfg.eval_chunk), data["y_val"])
        trace_val[epoch] = val
        improved = val < best_mse
        best_mse = torch.where(improved, val, best_mse)
        best_epoch = torch.where(improved, torch.full_like(best_epoch, epoch), best_epoch)
        best_flat = torch.where(improved[:, None], student.flat, best_flat)
        if progress is not None:
            progress(epoch, best_mse)

    def test_metrics(flat):
        err = predict_rows(student, data["X_test"], flat, cfg.eval_chunk) - data["y_test"]
        return (err * err).mean(1).sqrt().tolist(), err.abs().mean(1).tolist()

    rmse_best, mae_best = test_metrics(best_flat)
    rmse_last, mae_last = test_metrics(student.flat)
    wall = time.perf_counter() - t0
    results = []
    for r in range(n_rep):
        results.append({
            "test_rmse": rmse_best[r],
            "test_mae": mae_best[r],
            "test_rmse_last": rmse_last[r],
            "test_mae_last": mae_last[r],
            "val_rmse_best": math.sqrt(best_mse[r].item()),
            "best_epoch": int(best_epoch[r].item()),
            "epochs_run": cfg.epochs,
            "batch_size": m,
            "wall_time_s": wall / n_rep,
        })
    traces = {"val_rmse": trace_val.sqrt().cpu(), "loss_g": trace_g.cpu(), "loss_p": trace_p.cpu()}
    if keep_samples:
        xs = method.sample(keep_samples)
        traces["synthetic_x"] = xs.detach().cpu()
        traces["synthetic_t"] = teacher.predict(xs).detach().cpu()
    return results, traces, student, best_flat
