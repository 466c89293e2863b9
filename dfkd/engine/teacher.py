"""Teacher training (paper section 3.2; SPEC section 1 "Teacher"), all seeds at once.

Each replica is one (dataset, seed) teacher on its own split. The protocol,
per replica: RMSprop (lr 1e-3, weight decay 1e-5), MSE, shuffled batches of 16.
After every epoch the validation MSE is computed (here: plain MSE over all
validation rows, which SPEC allows in place of the authors' mean of per-batch
MSEs). A new best is copied; otherwise ``ReduceLROnPlateau(factor 0.5)`` is
stepped with the loss and a never-reset counter grows; training stops once it
exceeds ``stop_after`` (50). The best-validation copy is the teacher.

Divergence guard: a replica whose validation loss turns non-finite stops there
(its best copy from the epochs before is kept, as early stopping would); one
that never had a finite validation loss is reported failed (``failure_reason``)
and the students distilled from it are recorded as failed. The replicas beside
it are independent and go on.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from typing import TYPE_CHECKING

import torch

from dfkd.core import rng
from dfkd.core.optim import PlateauStack, RMSpropStack
from dfkd.models.mlp import MLPStack

if TYPE_CHECKING:
    from dfkd.data.split import Split


@dataclass(frozen=True)
class TeacherConfig:
    """Everything that determines a tabular teacher besides its data split and seed."""

    hidden: int = 500
    lr: float = 1e-3
    weight_decay: float = 1e-5
    batch_size: int = 16
    max_epochs: int = 500
    stop_after: int = 50
    plateau_factor: float = 0.5
    plateau_patience: int = 10


def stack_splits(splits: list[Split], device="cpu") -> dict[str, torch.Tensor]:
    """Stack per-seed splits into ``(R, n, ...)`` tensors (all seeds have equal split sizes).

    An array that every seed shares (the same object, as MNIST's fixed split is)
    becomes one tensor expanded over the replicas, without copies.
    """
    out = {}
    for name in ("X_train", "y_train", "X_val", "y_val", "X_test", "y_test"):
        arrays = [getattr(s, name) for s in splits]
        if len(arrays) > 1 and all(a is arrays[0] for a in arrays):
            one = torch.as_tensor(arrays[0], dtype=torch.float32).to(device)
            out[name] = one.unsqueeze(0).expand((len(arrays),) + tuple(one.shape))
        else:
            out[name] = torch.stack([torch.as_tensor(a, dtype=torch.float32) for a in arrays]).to(device)
    return out


def mse_per_replica(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error over rows, one value per replica ``(R,)``."""
    diff = pred - target
    return (diff * diff).mean(1)


def train_teachers(splits: list[Split], seeds: list[int], cfg: TeacherConfig = TeacherConfig(), device="cpu",
                   progress=None):
    """Train one teacher per seed, all in one stack.

    Args:
        splits: one :class:`Split` per seed.
        seeds: the run seeds (they seed initialisation and shuffling).
        progress: optional callable ``(epoch, n_active, best_val_rmse_list)`` called after each epoch.

    Returns:
        ``(stack, infos)``: an :class:`MLPStack` holding each replica's best-validation
        weights, and per replica a dict with ``val_rmse``, ``test_rmse``, ``epochs``, ``wall_time_s``,
        ``diverged_epoch`` (None, or the epoch whose validation loss was non-finite) and
        ``failure_reason`` (None unless no epoch ever had a finite validation loss).
    """
    t0 = time.perf_counter()
    data = stack_splits(splits, device)
    xtr, ytr = data["X_train"], data["y_train"]
    n_rep, n_train, d = xtr.shape
    net = MLPStack.init(d, cfg.hidden, 1, rng.generators(seeds, "teacher_init"), device=device)
    opt = RMSpropStack(net.flat, cfg.lr, cfg.weight_decay)
    plateau = PlateauStack(opt.lr, factor=cfg.plateau_factor, patience=cfg.plateau_patience)
    shuffles = rng.generators(seeds, "teacher_shuffle")
    best_flat = net.flat.clone()
    best = [math.inf] * n_rep
    bad = [0] * n_rep
    active = [True] * n_rep
    epochs_run = [0] * n_rep
    diverged: list[int | None] = [None] * n_rep
    rows = torch.arange(n_rep, device=xtr.device)[:, None]
    for epoch in range(cfg.max_epochs):
        perm = torch.stack([torch.randperm(n_train, generator=g) for g in shuffles]).to(xtr.device)
        xs, ys = xtr[rows, perm], ytr[rows, perm]
        for i in range(0, n_train, cfg.batch_size):
            xb, yb = xs[:, i:i + cfg.batch_size], ys[:, i:i + cfg.batch_size]
            out, cache = net.forward(xb, keep=True)
            g_out = (out.squeeze(-1) - yb).mul_(2.0 / yb.shape[1])
            opt.step(net.backward(cache, g_out)[0])
        val = mse_per_replica(net.predict(data["X_val"]), data["y_val"]).tolist()
        for r in range(n_rep):
            if not active[r]:
                continue
            epochs_run[r] = epoch + 1
            if not math.isfinite(val[r]):
                diverged[r] = epoch
                active[r] = False
                opt.lr[r] = 0.0  # frozen (its weights are not finite): its best copy, if any, is the teacher
            elif val[r] < best[r]:
                best[r] = val[r]
                best_flat[r].copy_(net.flat[r])
            else:
                plateau.step(r, val[r])
                bad[r] += 1
                if bad[r] > cfg.stop_after:
                    active[r] = False
                    opt.lr[r] = 0.0  # frozen: its best copy is already kept
        if progress is not None:
            progress(epoch, sum(active), [math.sqrt(b) for b in best])
        if not any(active):
            break
    net.flat.copy_(best_flat)
    test = mse_per_replica(net.predict(data["X_test"]), data["y_test"]).sqrt().tolist()
    wall = time.perf_counter() - t0
    infos = [
        {"val_rmse": math.sqrt(best[r]), "test_rmse": test[r], "epochs": epochs_run[r], "wall_time_s": wall / n_rep,
         "diverged_epoch": diverged[r],
         "failure_reason": (f"teacher diverged: non-finite validation loss at epoch {diverged[r]}, before any "
                            f"finite one" if not math.isfinite(best[r]) else None)}
        for r in range(n_rep)
    ]
    return net, infos
