"""The plain one-model-at-a-time loop: the reference the batched engine must match.

Written independently of the batched engine, in the authors' style: ``nn.Module``
networks, autograd, ``torch.optim.RMSprop`` and ``ReduceLROnPlateau``. It draws
from the same per-seed random streams in the same order, so a replica of the
batched engine and this loop for the same seed agree to float tolerance
(tests/test_equivalence.py). It is also the baseline of ``make bench``.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

from dfkd.core import rng
from dfkd.engine.alpha import AlphaSchedule
from dfkd.engine.distill import StudentConfig
from dfkd.engine.teacher import TeacherConfig
from dfkd.models.mlp import init_mlp_params, mlp_module


def _t(a):
    return torch.as_tensor(a, dtype=torch.float32)


def train_teacher_reference(split, seed: int, cfg: TeacherConfig = TeacherConfig()):
    """Train one teacher; returns ``(module, info)`` with the best-validation weights."""
    xtr, ytr, xval, yval = _t(split.X_train), _t(split.y_train), _t(split.X_val), _t(split.y_val)
    d = xtr.shape[1]
    net = mlp_module(init_mlp_params(d, cfg.hidden, 1, rng.generator(seed, "teacher_init")))
    opt = torch.optim.RMSprop(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=cfg.plateau_factor, patience=cfg.plateau_patience)
    shuffle = rng.generator(seed, "teacher_shuffle")
    loss_fn = nn.MSELoss()
    best, best_state, bad, epochs = math.inf, copy.deepcopy(net.state_dict()), 0, 0
    for epoch in range(cfg.max_epochs):
        epochs = epoch + 1
        perm = torch.randperm(xtr.shape[0], generator=shuffle)
        for i in range(0, xtr.shape[0], cfg.batch_size):
            idx = perm[i:i + cfg.batch_size]
            opt.zero_grad()
            loss_fn(net(xtr[idx]).squeeze(-1), ytr[idx]).backward()
            opt.step()
        with torch.no_grad():
            val = loss_fn(net(xval).squeeze(-1), yval).item()
        if val < best:
            best, best_state = val, copy.deepcopy(net.state_dict())
        else:
            sched.step(val)
            bad += 1
            if bad > cfg.stop_after:
                break
    net.load_state_dict(best_state)
    with torch.no_grad():
        test = loss_fn(net(_t(split.X_test)).squeeze(-1), _t(split.y_test)).sqrt().item()
    return net, {"val_rmse": math.sqrt(best), "test_rmse": test, "epochs": epochs}


def _objective(teacher, student, x, gamma):
    t, s = teacher(x).squeeze(-1), student(x).squeeze(-1)
    return (-(t - s) ** 2 + gamma * s ** 2).mean()


def has_reference(method: str) -> bool:
    """Whether the one-model loop has its own form of ``method`` (the paper's three tabular methods; any other
    method is checked against its batched self only, e.g. by the golden-number test)."""
    return method in ("random", "generator", "direct")


def distill_reference(teacher: nn.Module, split, seed: int, method: str, params: dict, alpha: AlphaSchedule,
                      cfg: StudentConfig = StudentConfig()):
    """Distil one student with method ``random``, ``generator`` or ``direct``, written independently of the
    batched engine as the authors' code is (``nn.Module``, autograd, torch's optimizers); returns a metrics dict.

    Raises:
        ValueError: for a method the loop has no form of (see :func:`has_reference`).
    """
    if not has_reference(method):
        raise ValueError(f"the one-model reference loop has no form of method '{method}'")
    params = dict(params)
    xval, yval, xte, yte = _t(split.X_val), _t(split.y_val), _t(split.X_test), _t(split.y_test)
    d = xval.shape[1]
    m = cfg.batch_size or alpha.default_batch_size()
    for p in teacher.parameters():
        p.requires_grad_(False)
    student = mlp_module(init_mlp_params(d, cfg.hidden, 1, rng.generator(seed, "student_init")))
    opt = torch.optim.RMSprop(student.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    noise = rng.generator(seed, "noise")
    gamma = params.get("gamma", 1e-5)
    if method == "generator":
        latent = params.get("latent", 50)
        gen = mlp_module(init_mlp_params(latent, params.get("hidden", 500), d, rng.generator(seed, "method_init")))
        gen_opt = torch.optim.RMSprop(gen.parameters(), lr=params.get("lr", 1e-3),
                                      weight_decay=params.get("weight_decay", 1e-5))

    def synthetic():
        if method == "random":
            return torch.randn(m, d, generator=noise)
        if method == "generator":
            with torch.no_grad():
                return gen(torch.randn(m, latent, generator=noise))
        x = torch.randn(m, d, generator=noise).requires_grad_(True)  # direct
        x_opt = torch.optim.RMSprop([x], lr=params.get("lr", 0.1), weight_decay=params.get("beta", 1e-5))
        for _ in range(params.get("steps", 2)):
            x_opt.zero_grad()
            _objective(teacher, student, x, gamma).backward()
            x_opt.step()
        return x.detach()

    best, best_state, best_epoch = math.inf, None, 0
    for epoch in range(cfg.epochs):
        a = alpha(epoch, cfg.epochs)
        if method == "generator" and a > 0:
            for _ in range(params.get("rounds", 1)):
                x = gen(torch.randn(m, latent, generator=noise))
                loss = _objective(teacher, student, x, gamma) + params.get("beta", 1e-5) * (x ** 2).sum()
                gen_opt.zero_grad()
                loss.backward()
                gen_opt.step()
        for _ in range(cfg.steps_per_epoch):
            loss = 0.0
            if a > 0:
                xg = synthetic()
                loss = loss + a * ((teacher(xg) - student(xg)) ** 2).mean()
            if a < 1:
                xp = torch.randn(m, d, generator=noise)
                loss = loss + (1 - a) * ((teacher(xp) - student(xp)) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            val = ((student(xval).squeeze(-1) - yval) ** 2).mean().item()
        if val < best:
            best, best_state, best_epoch = val, copy.deepcopy(student.state_dict()), epoch
    last_rmse = ((student(xte).squeeze(-1) - yte) ** 2).mean().sqrt().item()
    student.load_state_dict(best_state)
    with torch.no_grad():
        err = student(xte).squeeze(-1) - yte
    return {"test_rmse": err.pow(2).mean().sqrt().item(), "test_mae": err.abs().mean().item(),
            "test_rmse_last": last_rmse, "val_rmse_best": math.sqrt(best), "best_epoch": best_epoch}
