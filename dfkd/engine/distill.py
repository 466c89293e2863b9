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

from dfkd.core import rng
from dfkd.engine.alpha import AlphaSchedule
from dfkd.core.state import generator_states, restore_, set_generator_states
from dfkd.engine.checkpoint import Checkpoint
from dfkd.core.optim import RMSpropStack
from dfkd.engine.teacher import mse_per_replica, stack_splits
from dfkd.data.context import Context, default_context
from dfkd.methods.base import Method
from dfkd.core.losses import check_loss, loss_terms
from dfkd.models import build_stack



@dataclass(frozen=True)
class StudentConfig:
    """The student and its training budget."""

    hidden: int = 50
    lr: float = 1e-3
    weight_decay: float = 1e-5
    epochs: int = 2000
    steps_per_epoch: int = 10
    batch_size: int = field(default=0, metadata={"min": 0})  # 0: the paper's rule (50 when alpha mixes both sets, else 100)
    # Added for MNIST (issue 3); at their defaults they leave the tabular protocol and its hashes unchanged.
    arch: str = "mlp"  # model module dfkd/models/<arch>.py; mlp uses `hidden`, others `arch_params`
    loss: str = "mse"  # student loss on T(x) - S(x): mse | logcosh
    arch_params: dict = field(default_factory=dict)
    eval_chunk: int = field(default=0, metadata={"min": 0})  # rows per forward pass when validating/testing; 0 = all at once

    #: Fields that enter a record's config hash only when set away from their default.
    LATE_FIELDS = ("arch", "loss", "arch_params", "eval_chunk")

    def __post_init__(self):
        check_loss(self.loss, "student loss")

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


def synthetic_batch(method: Method, context: Context, noise, a: float, m: int, device):
    """One student step's inputs: ``m`` rows x_g from ``method`` (made only when ``a > 0``), then ``m`` rows x_p
    from the base distribution (only when ``a < 1``), concatenated along the rows, and each part's per-row weight
    (``a / m``, ``(1 - a) / m``). The draws come in this order, from the replicas' ``noise`` streams."""
    parts, weights = [], []
    if a > 0:
        parts.append(method.sample(m))
        weights.append(a / m)
    if a < 1:
        parts.append(context.sampler(noise, m, device))
        weights.append((1 - a) / m)
    return (parts[0] if len(parts) == 1 else torch.cat(parts, 1)), weights


@dataclass
class _Stack:
    """What one distillation run changes as it trains (besides the method's own state): a checkpoint's content."""

    student: object
    opt: RMSpropStack
    noise: list  # per-replica generators of x_p and of the methods' starting points
    init_gens: list  # the student's initialisation streams; a model with dropout draws its masks from them
    best_flat: torch.Tensor
    best_mse: torch.Tensor
    best_epoch: torch.Tensor
    failed_epoch: torch.Tensor
    trace_val: torch.Tensor
    trace_g: torch.Tensor
    trace_p: torch.Tensor

    TENSORS = ("best_flat", "best_mse", "best_epoch", "failed_epoch", "trace_val", "trace_g", "trace_p")


def _fresh_stack(teacher, seeds, method: Method, cfg: StudentConfig, device, context: Context, real=None) -> _Stack:
    """A new student stack, optimizer and random streams, with ``method`` bound to them (and to ``real``)."""
    n_rep = len(seeds)
    init_gens = rng.generators(seeds, "student_init")
    student = cfg.build(context.input_shape, init_gens, device=device)
    opt = RMSpropStack(student.flat, cfg.lr, cfg.weight_decay)
    noise = rng.generators(seeds, "noise", device)
    method.set_real(real)
    method.bind(teacher, student, seeds, device, context)
    method.set_noise(noise)
    return _Stack(
        student=student, opt=opt, noise=noise, init_gens=init_gens, best_flat=student.flat.clone(),
        best_mse=torch.full((n_rep,), math.inf, device=device),
        best_epoch=torch.zeros(n_rep, dtype=torch.long, device=device),
        failed_epoch=torch.full((n_rep,), -1, dtype=torch.long, device=device),
        trace_val=torch.empty(cfg.epochs, n_rep, device=device),
        trace_g=torch.full((cfg.epochs, n_rep), math.nan, device=device),
        trace_p=torch.full((cfg.epochs, n_rep), math.nan, device=device))


def _checkpoint_state(st: _Stack, method: Method, teacher, epoch: int, epochs: int, elapsed_s: float) -> dict:
    """Everything epoch ``epoch`` onwards depends on (tensors on the CPU; see :mod:`dfkd.engine.checkpoint`)."""
    teacher_state = getattr(teacher, "state_dict", None)  # a black box's query counts; trained teachers are fixed
    return {
        "epoch": epoch, "epochs": epochs, "replicas": len(st.noise), "elapsed_s": elapsed_s,
        "student": st.student.flat.detach().cpu(), "opt": st.opt.state_dict(),
        "engine": {name: getattr(st, name).cpu() for name in _Stack.TENSORS},
        "rng": {"noise": generator_states(st.noise), "student_init": generator_states(st.init_gens)},
        "method": method.state_dict(), "method_base": method.base_state(), "teacher": teacher_state() if teacher_state else None,
    }


def _restore(st: _Stack, state: dict, method: Method, teacher, epochs: int) -> int:
    """Load a checkpoint's state into a fresh stack; returns the epoch to continue at.

    Raises:
        ValueError, KeyError, TypeError, IndexError, RuntimeError: if the state does not fit (the caller keeps the
            file aside and starts over with a fresh stack).
    """
    epoch = int(state["epoch"])
    if state["epochs"] != epochs or state["replicas"] != len(st.noise) or not 0 < epoch < epochs:
        raise ValueError(f"checkpoint of {state['replicas']} replicas at epoch {epoch} of {state['epochs']}, "
                         f"this stack has {len(st.noise)} replicas and {epochs} epochs")
    restore_(st.student.flat, state["student"])  # in place: the optimizer and the model's views share it
    st.opt.load_state_dict(state["opt"])
    for name in _Stack.TENSORS:
        restore_(getattr(st, name), state["engine"][name])
    set_generator_states(st.noise, state["rng"]["noise"])
    set_generator_states(st.init_gens, state["rng"]["student_init"])
    method.load_state_dict(state["method"])
    method.load_base_state(state.get("method_base", {}))
    if state["teacher"] is not None or hasattr(teacher, "load_state_dict"):
        teacher.load_state_dict(state["teacher"])
    return epoch


def distill(teacher, splits, seeds: list[int], method: Method, alpha: AlphaSchedule,
            cfg: StudentConfig = StudentConfig(), device="cpu", progress=None, context: Context | None = None,
            keep_samples: int = 0, checkpoint: Checkpoint | None = None, real=None):
    """Distil one student per seed from the corresponding teacher replica.

    Args:
        teacher: frozen teachers (a model stack, or a black box answering ``predict``), replica r for ``seeds[r]``.
        splits: per-seed :class:`~dfkd.data.split.Split` (validation and test use real data).
        method: an unbound :class:`~dfkd.methods.base.Method`.
        progress: optional callable ``(epoch, best_val_rmse (R,) tensor)`` called after every epoch.
        context: the dataset's input shape and base distribution; default tabular N(0, I) of the teacher's width.
        keep_samples: if > 0, after training draw that many synthetic inputs per replica from the method
            (with the final student) and return them with the teacher's predictions, for figures.
        checkpoint: optional :class:`~dfkd.engine.checkpoint.Checkpoint`: training resumes from its file
            when there is a usable one, and saves to it at an epoch boundary whenever it is due. Results
            are identical to an uninterrupted run's.
        real: optional :class:`~dfkd.data.real.RealRows` (the data-scarce setting), handed to the method.

    Returns:
        ``(results, traces, student, best_flat)``: per replica a dict of metrics
        (``failure_reason`` is set for a replica that diverged); traces is a dict of
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
    if hasattr(teacher, "freeze"):
        teacher.freeze()
    st = _fresh_stack(teacher, seeds, method, cfg, device, context, real)
    start = 0
    saved = checkpoint.load() if checkpoint is not None else None
    if saved is not None:
        teacher_before = teacher.state_dict() if hasattr(teacher, "state_dict") else None
        try:
            start = _restore(st, saved, method, teacher, cfg.epochs)
        except (ValueError, KeyError, TypeError, IndexError, RuntimeError) as exc:
            # what a file of another shape, length or layout raises: kept aside, reported, and the stack starts
            # over; anything else is a bug and propagates
            checkpoint.rejected(exc, saved)
            if teacher_before is not None:
                teacher.load_state_dict(teacher_before)
            st = _fresh_stack(teacher, seeds, method, cfg, device, context, real)
        else:
            checkpoint.resumed(saved, seeds)
        del saved
    student, opt, noise = st.student, st.opt, st.noise
    best_flat, best_mse, best_epoch, failed_epoch = st.best_flat, st.best_mse, st.best_epoch, st.failed_epoch
    trace_val, trace_g, trace_p = st.trace_val, st.trace_g, st.trace_p
    train_kw = {"train": True} if getattr(student, "has_dropout", False) else {}

    for epoch in range(start, cfg.epochs):
        a = alpha(epoch, cfg.epochs)
        if a > 0:
            method.start_epoch(epoch, m)
        sum_g = torch.zeros(n_rep, device=device)
        sum_p = torch.zeros(n_rep, device=device)
        for _ in range(cfg.steps_per_epoch):
            if a > 0 and method.owns_loss:  # the method gives its whole term; the engine adds the x_p part
                grad, loss_g = method.student_gradient(m, a)
                sum_g.add_(loss_g)
                if a < 1:
                    x = context.sampler(noise, m, device)
                    s, cache = student.forward(x, keep=True, **train_kw)
                    sq, slope, factor = loss_terms(s.squeeze(-1) - teacher.predict(x), cfg.loss)
                    sum_p.add_(sq.mean(1))
                    grad = grad + student.backward(cache, slope * (factor * (1 - a) / m))[0]
                opt.step(grad)
                continue
            x, weights = synthetic_batch(method, context, noise, a, m, device)
            t = teacher.predict(x)
            s, cache = student.forward(x, keep=True, **train_kw)
            diff = s.squeeze(-1) - t
            sq, slope, factor = loss_terms(diff, cfg.loss)
            if len(weights) == 1:
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
        # Divergence guard: a replica whose loss turns non-finite is frozen and reported as
        # failed; the replicas beside it are independent and go on.
        diverged = ~(torch.isfinite(val) & torch.isfinite(sum_g) & torch.isfinite(sum_p)) & (failed_epoch < 0)
        failed_epoch = torch.where(diverged, torch.full_like(failed_epoch, epoch), failed_epoch)
        opt.lr.masked_fill_(diverged.view(-1, *([1] * (opt.lr.dim() - 1))), 0.0)
        improved = val < best_mse
        best_mse = torch.where(improved, val, best_mse)
        best_epoch = torch.where(improved, torch.full_like(best_epoch, epoch), best_epoch)
        best_flat = torch.where(improved[:, None], student.flat, best_flat)
        if checkpoint is not None and epoch + 1 < cfg.epochs and checkpoint.due():
            st.best_flat, st.best_mse, st.best_epoch, st.failed_epoch = best_flat, best_mse, best_epoch, failed_epoch
            elapsed = checkpoint.prior_s + time.perf_counter() - t0 - checkpoint.seconds
            checkpoint.save(_checkpoint_state(st, method, teacher, epoch + 1, cfg.epochs, elapsed))
        if progress is not None:
            progress(epoch, best_mse)

    def test_metrics(flat):
        err = predict_rows(student, data["X_test"], flat, cfg.eval_chunk) - data["y_test"]
        return (err * err).mean(1).sqrt().tolist(), err.abs().mean(1).tolist()

    rmse_best, mae_best = test_metrics(best_flat)
    rmse_last, mae_last = test_metrics(student.flat)
    wall = time.perf_counter() - t0
    if checkpoint is not None:  # training time only: earlier runs' up to the checkpoint, not its reads and writes
        wall += checkpoint.prior_s - checkpoint.seconds
    results = []
    failed = failed_epoch.tolist()
    for r in range(n_rep):
        results.append({
            "failure_reason": None if failed[r] < 0 else f"non-finite loss at epoch {failed[r]}: diverged",
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
