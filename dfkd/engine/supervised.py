"""Supervised training of a differentiable model stack on real data: the MNIST teacher.

The paper gives the teacher's architecture (Table 2, f = 10) and loss (Log-Cosh)
but not its training schedule; ours is in :class:`CNNTeacherConfig` and
``conf/teacher/cnn10.yaml``: RMSprop (lr 1e-3, weight decay 1e-5, as the
paper's students), shuffled batches of 50, dropout on while training, a fixed
number of epochs, and the copy with the lowest validation MSE is the teacher.
The paper reports one teacher MAE (0.157, no spread), so by default one teacher
(seed ``teacher.seed``) serves every run.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch

from dfkd.core import rng
from dfkd.core.losses import check_loss, loss_terms
from dfkd.engine.distill import predict_rows
from dfkd.core.optim import RMSpropStack
from dfkd.errors import ConfigError
from dfkd.models import build_stack


#: Weight initialisations of the image teacher: PyTorch's default (U(+-1/sqrt(fan_in)) for weights and biases)
#: or Keras' default (Glorot-uniform weights, zero biases).
INITS = ("torch", "glorot")
#: Which copy of the teacher is kept: the one of lowest validation MSE, or the last epoch's.
SELECTIONS = ("best", "last")


@dataclass(frozen=True)
class CNNTeacherConfig:
    """Everything that determines an image teacher besides its data.

    Fields added for the teacher study (issue 15; ``LATE_FIELDS``) leave the teacher's cache key, and so every
    cell's config hash, as they were while they sit at their defaults: ``init`` (``torch`` | ``glorot``),
    ``carve_out`` (true: train on the images outside the validation set; false: on all of them, validation set
    included, which then needs ``select: last``) and ``select`` (``best`` validation MSE | ``last`` epoch).
    """

    LATE_FIELDS = ("init", "carve_out", "select")

    arch: str = "cnn"
    arch_params: dict = field(default_factory=lambda: {"filters": 10})
    lr: float = 1e-3
    weight_decay: float = 1e-5
    batch_size: int = 50
    epochs: int = 15
    loss: str = "logcosh"
    seed: int = field(default=0, metadata={"min": 0})  # the one teacher every run shares
    eval_chunk: int = field(default=200, metadata={"min": 0})
    init: str = "torch"
    carve_out: bool = True
    select: str = "best"

    def __post_init__(self):
        check_loss(self.loss, "teacher loss")
        if self.init not in INITS:
            raise ConfigError(f"unknown teacher.init {self.init!r}: use one of {', '.join(INITS)}")
        if self.select not in SELECTIONS:
            raise ConfigError(f"unknown teacher.select {self.select!r}: use one of {', '.join(SELECTIONS)}")
        if not isinstance(self.carve_out, bool):
            raise ConfigError(f"teacher.carve_out must be true or false, got {self.carve_out!r}")
        if not self.carve_out and self.select == "best":
            raise ConfigError("teacher.carve_out=false trains on the validation images too, so they cannot pick "
                              "the best copy: set teacher.select=last as well")


def train_supervised(split, seeds: list[int], cfg: CNNTeacherConfig, input_shape, device="cpu", progress=None):
    """Train one network per seed on ``split`` (shared), all in one stack.

    Args:
        split: a :class:`~dfkd.data.split.Split` with image arrays ``(n, C, H, W)``.
        seeds: seeds of the networks (initialisation, shuffling and dropout streams).
        progress: optional callable ``(epoch, best_val_rmse list)``.

    Returns:
        ``(stack, infos)``: the stack holding each replica's best-validation weights, and per replica
        ``val_rmse``, ``test_rmse``, ``test_mae``, ``epochs``, ``best_epoch``, ``wall_time_s``.
    """
    t0 = time.perf_counter()
    device = torch.device(device)
    n_rep = len(seeds)
    xtr = torch.as_tensor(split.X_train).to(device)
    ytr = torch.as_tensor(split.y_train).to(device)
    if not cfg.carve_out:  # no held-out validation set: the teacher trains on those images too
        xtr = torch.cat([xtr, torch.as_tensor(split.X_val).to(device)])
        ytr = torch.cat([ytr, torch.as_tensor(split.y_val).to(device)])
    xval = torch.as_tensor(split.X_val).to(device).unsqueeze(0).expand((n_rep,) + tuple(split.X_val.shape))
    yval = torch.as_tensor(split.y_val).to(device)
    net = build_stack(cfg.arch, input_shape, rng.generators(seeds, "teacher_init"), device, **cfg.arch_params)
    if cfg.init == "glorot":
        from dfkd.models.cnn import glorot_params

        net.load([glorot_params(net, g) for g in rng.generators(seeds, "teacher_init_glorot")])
    opt = RMSpropStack(net.flat, cfg.lr, cfg.weight_decay)
    shuffles = rng.generators(seeds, "teacher_shuffle")
    train_kw = {"train": True} if getattr(net, "has_dropout", False) else {}
    best_flat = net.flat.clone()
    best = torch.full((n_rep,), math.inf, device=device)
    best_epoch = [0] * n_rep
    n = xtr.shape[0]
    for epoch in range(cfg.epochs):
        perm = torch.stack([torch.randperm(n, generator=g) for g in shuffles]).to(device)
        for i in range(0, n, cfg.batch_size):
            idx = perm[:, i:i + cfg.batch_size]
            xb, yb = xtr[idx], ytr[idx]  # (R, b, C, H, W), (R, b)
            out, cache = net.forward(xb, keep=True, **train_kw)
            _, slope, factor = loss_terms(out.reshape(yb.shape) - yb, cfg.loss)
            opt.step(net.backward(cache, slope * (factor / yb.shape[1]))[0])
        err = predict_rows(net, xval, chunk=cfg.eval_chunk) - yval
        val = (err * err).mean(1)
        improved = val < best if cfg.select == "best" else torch.ones_like(val, dtype=torch.bool)
        for r in range(n_rep):
            if bool(improved[r]):
                best_epoch[r] = epoch
        best = torch.where(improved, val, best)
        best_flat = torch.where(improved[:, None], net.flat, best_flat)
        if progress is not None:
            progress(epoch, best.sqrt().tolist())
    net.flat.copy_(best_flat)
    xte = torch.as_tensor(split.X_test).to(device).unsqueeze(0).expand((n_rep,) + tuple(split.X_test.shape))
    err = predict_rows(net, xte, chunk=cfg.eval_chunk) - torch.as_tensor(split.y_test).to(device)
    rmse, mae = (err * err).mean(1).sqrt().tolist(), err.abs().mean(1).tolist()
    wall = time.perf_counter() - t0
    infos = [{"val_rmse": math.sqrt(best[r].item()), "test_rmse": rmse[r], "test_mae": mae[r],
              "epochs": cfg.epochs, "best_epoch": best_epoch[r], "wall_time_s": wall / n_rep} for r in range(n_rep)]
    return net, infos
