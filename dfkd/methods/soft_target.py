"""Soft targeted transfer set synthesis (Wang 2021), adapted to one-output regression teachers."""

from __future__ import annotations

import math

import torch

from dfkd.core import rng
from dfkd.core.state import generator_states, restore_, set_generator_states
from dfkd.core.validate import integer, number, pos_int
from dfkd.errors import ConfigError
from dfkd.methods.base import Method

MUS = ("bias", "zero")
TARGETS = ("features", "output")

#: Smallest per-feature std of the prior term (MNIST's border pixels have variance 0 in the base distribution).
PRIOR_STD_FLOOR = 0.05


def _positive(value, name: str, example: str) -> float:
    """``value`` as a finite float > 0, else a one-line ConfigError naming a fix."""
    out = number(value, name, None)
    if out <= 0:
        raise ConfigError(f"{name} must be > 0, got {value!r}: set e.g. {name}={example}")
    return out


class SoftTarget(Method):
    """x_g drawn from a transfer set synthesised towards soft targets of a Gaussian model of a hidden layer.

    The paper: Z. Wang, "Data-Free Knowledge Distillation with Soft Targeted Transfer Set Synthesis",
    AAAI 2021, 35(11):10245-10253 (arXiv:2104.04868). For classifiers it models an intermediate feature
    layer of the teacher as a multivariate normal N(mu, Sigma) with Sigma = sigma * R, R the correlation
    matrix of the layer's units computed from the teacher's weights (cosine similarity of the units' weight
    vectors); it samples feature vectors, passes them through the remaining layers to get soft targets
    (class probabilities), and synthesises one input per target by optimising noise with Adam (betas 0.5,
    0.99) until the teacher's output matches it, with an activation term added to the loss. It reports the
    best sigma at 1.5 (MNIST) to 2.0 (CIFAR-10), good results over 0.5-3, and an activation weight of
    0.05-0.1. (Section and equation numbers are not cited here: this follows the paper's method as
    described, and its notation may differ.)

    Ours, for a regression teacher whose modelled layer is ``a = W1 x + b1`` followed by an activation
    phi and a head g (MLP: phi = tanh, ``g(a) = w2 . tanh(a) + b2``; MNIST CNN: a hidden FC layer, phi =
    softplus, g = the remaining FC layers):

    - R_ij = cos(W1[i, :], W1[j, :]) from the layer's incoming weights. With U the row-normalised W1
      (h x fan_in), R = U U^T (rank <= fan_in), so ``a* = mu + sqrt(sigma) U z + sqrt(jitter) e`` with
      z ~ N(0, I_fan_in), e ~ N(0, I_h) has covariance exactly ``sigma R + jitter I`` (``jitter`` 0 by default).
      ``mu`` is the layer's bias b1 (``mu: bias``) or 0 (``mu: zero``).
    - Soft target ``y* = g(a*)`` (``target: features``); or, ``target: output``, the teacher's output
      distribution under the base inputs widened by sigma: ``y* = mean + sqrt(sigma) (T(x0) - mean)``
      over ``size`` fresh base draws x0 (mean: their average), a reading of ours that needs no layer model.
    - Each x starts from the dataset's base distribution (:meth:`Method.base`) and takes ``steps`` steps
      of Adam (betas 0.5, 0.99, ``lr``) on, per row,
      ``(T(x) - y*)^2 + prior * mean_j ((x_j - m_j) / s_j)^2 / 2 + act * mean_units phi(a)^2``,
      where (m, s) are the base distribution's per-feature mean and std (0 and 1 for N(0, I), so the
      prior term is |x|^2 / (2d), the base's negative log-density per feature; s floored at 0.05) and
      phi(a)^2 is the activation term: for tanh a saturation penalty, for softplus an L2 activation penalty.
      Inputs with bounds (images) are clipped back into them after every step.
    - The rows are labelled by the engine with T(x), not y*: y* only steers the synthesis.
    - Budget: each replica builds a transfer set of ``size`` rows at its first epoch with alpha > 0 and
      again every ``refresh_every`` epochs (0: once); a student step's ``m`` rows are drawn from it
      uniformly with replacement. The optimisation runs ``chunk`` rows at a time (0: all at once); the
      loss is scaled by the whole set's size, so any chunking gives the same inputs.

    Every draw comes from per-replica streams (the engine's noise streams for the starting points, our
    ``soft_target`` stream for z, e, x0 and the row indices), and the replicas' losses are summed, so a
    replica's numbers do not depend on the stack it shares. The teacher's weights are never changed, and
    the student takes no part in the synthesis.

    Args:
        layer: the modelled layer (``hidden`` for the MLP; ``fc1``..``fc3`` for the MNIST CNN).
        mu: ``bias`` or ``zero``.
        target: ``features`` (soft targets from the layer model) or ``output``.
        sigma: the covariance scale (> 0).
        jitter: variance of extra independent noise per unit (>= 0).
        size: N, rows of the transfer set per replica.
        steps: K, Adam steps per build.
        lr: Adam's learning rate on x.
        prior, act: weights of the prior and the activation terms (>= 0).
        refresh_every: E, epochs between builds (0: build once).
        chunk: rows per optimisation pass (0: all ``size`` at once; bounds memory for images).
    """

    name = "soft_target"
    needs_gradients = True

    def __init__(self, layer: str = "hidden", mu: str = "bias", target: str = "features", sigma: float = 2.0,
                 jitter: float = 0.0, size: int = 2000, steps: int = 30, lr: float = 0.2, prior: float = 0.01,
                 act: float = 0.05, refresh_every: int = 100, chunk: int = 250):
        if mu not in MUS:
            raise ConfigError(f"method.mu '{mu}' unknown: use one of {', '.join(MUS)}")
        if target not in TARGETS:
            raise ConfigError(f"method.target '{target}' unknown: use one of {', '.join(TARGETS)}")
        self.layer, self.mu_kind, self.target = str(layer), mu, target
        self.sigma = _positive(sigma, "method.sigma", "2.0")
        self.jitter = number(jitter, "method.jitter")
        self.size = pos_int(size, "method.size")
        self.steps = pos_int(steps, "method.steps")
        self.lr = _positive(lr, "method.lr", "0.2")
        self.prior, self.act = number(prior, "method.prior"), number(act, "method.act")
        self.refresh_every = integer(refresh_every, "method.refresh_every", 0)
        self.chunk = integer(chunk, "method.chunk", 0)

    # -- binding -----------------------------------------------------------------------------------------
    def bind(self, teacher, student, seeds, device="cpu", context=None) -> None:
        """Attach to the stacks and open the teacher's modelled layer.

        Raises:
            ConfigError: the teacher has no layer of that name (the message lists those it has), or none at all.
        """
        super().bind(teacher, student, seeds, device, context)
        names = tuple(getattr(teacher, "feature_layers", ()))
        if not names:
            raise ConfigError(f"method={self.name} models a hidden layer of the teacher, and this teacher "
                              f"({type(teacher).__name__}) opens none: use teacher=mlp500 or teacher=cnn10")
        if self.layer not in names:
            raise ConfigError(f"method.layer '{self.layer}' is not a layer of this teacher: it has "
                              f"{', '.join(names)} (set e.g. method.layer={names[0]})")
        self.feature = teacher.feature_layer(self.layer)
        w = self.feature.weight.detach().to(self.device)
        self.u = w / w.norm(dim=-1, keepdim=True).clamp_min(1e-12)  # (R, h, fan_in), rows of unit length
        bias = self.feature.bias.detach().to(self.device)
        self.mu = bias.clone() if self.mu_kind == "bias" else torch.zeros_like(bias)  # (R, h)
        sampler = self.context.sampler
        mean, std = getattr(sampler, "mean", None), getattr(sampler, "std", None)
        if mean is None or std is None:  # N(0, I)
            self.prior_mean, self.prior_scale = None, None
        else:
            self.prior_mean = mean.to(self.device).reshape(self.input_shape)
            self.prior_scale = 1.0 / std.to(self.device).reshape(self.input_shape).clamp_min(PRIOR_STD_FLOOR)
        self.gens = rng.generators(self.seeds, "soft_target", self.device)
        self.set: torch.Tensor | None = None  # (R, size, *input_shape)
        self.targets: torch.Tensor | None = None  # (R, size), the soft targets of the last build
        self.built_at, self.builds, self.epoch = -1, 0, 0

    def state_dict(self) -> dict:
        """The transfer set and its soft targets, the epoch of its build, the build count and our streams."""
        empty = torch.empty(0)
        return {"set": empty if self.set is None else self.set.detach().cpu(),
                "targets": empty if self.targets is None else self.targets.detach().cpu(),
                "built_at": int(self.built_at), "builds": int(self.builds), "epoch": int(self.epoch),
                "gens": generator_states(self.gens)}

    def load_state_dict(self, state: dict) -> None:
        shape = (len(self.seeds), self.size) + tuple(self.input_shape)
        saved, targets = state["set"], state["targets"]
        if saved.numel() == 0:
            self.set = self.targets = None
        else:
            if tuple(saved.shape) != shape or tuple(targets.shape) != shape[:2]:
                raise ValueError(f"saved transfer set {tuple(saved.shape)} does not fit {shape}")
            self.set = torch.empty(shape, device=self.device)
            restore_(self.set, saved.to(self.device))
            self.targets = torch.empty(shape[:2], device=self.device)
            restore_(self.targets, targets.to(self.device))
        set_generator_states(self.gens, state["gens"])
        self.built_at, self.builds, self.epoch = int(state["built_at"]), int(state["builds"]), int(state["epoch"])

    # -- the transfer set ----------------------------------------------------------------------------------
    def _rows(self) -> list[slice]:
        step = self.chunk or self.size
        return [slice(i, min(i + step, self.size)) for i in range(0, self.size, step)]

    @torch.no_grad()
    def soft_targets(self) -> torch.Tensor:
        """Draw ``size`` soft targets y* per replica ``(R, size)`` (advances our streams)."""
        n = self.size
        if self.target == "output":
            x0 = self.context.sampler(self.gens, n, self.device)
            t0 = torch.cat([self.teacher.predict(x0[:, rows]) for rows in self._rows()], 1)
            mean = t0.mean(1, keepdim=True)
            return mean + math.sqrt(self.sigma) * (t0 - mean)
        return self.feature.head(self.sample_features(n))

    @torch.no_grad()
    def sample_features(self, n: int) -> torch.Tensor:
        """``n`` pre-activations a* ~ N(mu, sigma R + jitter I) per replica ``(R, n, h)`` (advances our streams)."""
        r, h, fan_in = self.u.shape
        z = rng.randn(self.gens, (n, fan_in), self.device)
        a = torch.baddbmm(self.mu.unsqueeze(1), z, self.u.transpose(1, 2), alpha=math.sqrt(self.sigma))
        if self.jitter:
            a.add_(rng.randn(self.gens, (n, h), self.device), alpha=math.sqrt(self.jitter))
        return a

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The synthesis loss of rows ``x`` towards ``y`` ``(R, n)``, summed over replicas and rows (a scalar)."""
        a = self.feature.pre(x)
        miss = self.feature.head(a) - y
        value = miss.square().sum()
        if self.prior:
            dev = x if self.prior_mean is None else (x - self.prior_mean) * self.prior_scale
            value = value + self.prior * 0.5 * dev.square().flatten(2).mean(-1).sum()
        if self.act:
            value = value + self.act * self.feature.activation(a).square().mean(-1).sum()
        return value

    def input_grad(self, x: torch.Tensor, y: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
        """``scale`` times d :meth:`loss` / d x: by the layer's hand-written path where it has one, else autograd."""
        f = self.feature
        if f.forward is None:
            with torch.enable_grad():
                xg = x.detach().requires_grad_(True)
                return torch.autograd.grad(self.loss(xg, y) * scale, [xg])[0]
        out, cache = f.forward(x)
        h = self.u.shape[1]
        grad = f.backward(cache, (out - y).mul_(2.0 * scale), self.act * scale / h)
        if self.prior:  # d/dx of prior * mean_j ((x_j - m_j) / s_j)^2 / 2
            width = self.d
            if self.prior_mean is None:
                grad.add_(x, alpha=self.prior * scale / width)
            else:
                grad.add_((x - self.prior_mean) * self.prior_scale.square(), alpha=self.prior * scale / width)
        return grad

    def synthesize(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Optimise rows ``x (R, size, ...)`` towards ``y (R, size)``: ``steps`` Adam steps, chunk by chunk."""
        out = torch.empty_like(x)
        scale = 1.0 / self.size  # the whole set's mean, whatever the chunks
        clip = self.context.bounds is not None
        for rows in self._rows():
            xc = x[:, rows].clone()
            yc = y[:, rows]
            opt = torch.optim.Adam([xc], lr=self.lr, betas=(0.5, 0.99))
            for _ in range(self.steps):
                xc.grad = self.input_grad(xc, yc, scale)
                opt.step()
                if clip:
                    self.context.clip(xc)
            out[:, rows] = xc
        return out

    def build(self, epoch: int) -> None:
        """A new transfer set for every replica (at ``epoch``)."""
        y = self.soft_targets()
        self.set = self.synthesize(self.base(self.size), y)
        self.targets, self.built_at, self.builds = y, int(epoch), self.builds + 1

    # -- the method interface --------------------------------------------------------------------------------
    def start_epoch(self, epoch: int, m: int) -> None:
        """Build the transfer set at the first call and every ``refresh_every`` epochs after the last build."""
        self.epoch = int(epoch)
        if self.set is None or (self.refresh_every and epoch - self.built_at >= self.refresh_every):
            self.build(epoch)

    def sample(self, m: int) -> torch.Tensor:
        """``m`` rows per replica drawn uniformly, with replacement, from its transfer set."""
        if self.set is None:  # sampled before any epoch with alpha > 0 (e.g. samples kept for figures)
            self.build(self.epoch)
        idx = torch.stack([torch.randint(self.size, (m,), generator=g, device=self.device) for g in self.gens])
        return self.set[torch.arange(len(self.gens), device=self.device)[:, None], idx]
