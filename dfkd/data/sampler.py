"""Base distributions of synthetic inputs, one per kind of dataset.

The same sampler gives the plain random batch x_p, the random method's x_g and
direct optimization's starting points. A dataset's yaml chooses it with
``synthetic: {kind: normal|pixel|simplex, ...}``:

- ``normal``: x ~ N(0, I), for standardized tabular data (paper section 3.2).
- ``pixel``: each pixel ~ N(mean_p, var_p) from the data's per-pixel statistics,
  clipped to [0, 1] (paper section 3.5, MNIST); ``spread: variance`` uses the variance
  itself as the std (a reading of the authors' sampler, issue 15).
- ``simplex``: each feature ~ N(mean_j, std_j) of the training set, clipped to
  [0, 1], then every row renormalised to sum 1 (paper section 3.6, eSol).

Every draw comes from the replicas' own generators (:func:`dfkd.core.rng.randn`),
so a replica's numbers never depend on which other replicas share its stack.
"""

from __future__ import annotations

import math

import torch

from dfkd.core import rng
from dfkd.errors import ConfigError

KINDS = ("normal", "pixel", "simplex")
SPREADS = ("std", "variance")



def clip_to(x: torch.Tensor, bounds) -> torch.Tensor:
    """Clip ``x`` in place to ``bounds = (lo, hi)`` (tensors broadcastable to one input); None: no-op."""
    if bounds is not None:
        lo, hi = bounds
        torch.maximum(x, lo.to(x.device), out=x)
        torch.minimum(x, hi.to(x.device), out=x)
    return x

class Sampler:
    """Draws ``(R, m, *input_shape)`` batches; ``bounds`` is None or ``(lo, hi)`` tensors of one input's shape."""

    kind = "base"

    def __init__(self, input_shape):
        self.input_shape = tuple(int(s) for s in input_shape)
        self.bounds = None

    def standard(self, gens: list[torch.Generator], m: int, device="cpu") -> torch.Tensor:
        """Standard normal draws ``(R, m, *input_shape)``, replica r from ``gens[r]``."""
        return rng.randn(gens, (m,) + self.input_shape, device)

    def __call__(self, gens: list[torch.Generator], m: int, device="cpu") -> torch.Tensor:
        raise NotImplementedError

    def clip(self, x: torch.Tensor) -> torch.Tensor:
        """Project ``x`` onto the bounds in place (no-op without bounds)."""
        return clip_to(x, self.bounds)


class NormalSampler(Sampler):
    """x ~ N(0, I): exactly the draws the tabular engine has always made."""

    kind = "normal"

    def __call__(self, gens, m, device="cpu"):
        return self.standard(gens, m, device)


class PixelSampler(Sampler):
    """Each pixel ~ N(mean, var) of the data at that position, clipped to [lo, hi] (default [0, 1]).

    ``spread="variance"``: each pixel ~ N(mean, sigma = var) instead, the variance read as the std (Keras'
    ``normal(mean, var)`` with a variance where a std belongs); MNIST's pixel variances are below 0.2, so the
    images spread much less (mean pixel sd 0.067 instead of 0.193).
    """

    kind = "pixel"

    def __init__(self, mean, var, lo: float = 0.0, hi: float = 1.0, spread: str = "std"):
        if spread not in SPREADS:
            raise ConfigError(f"synthetic.spread must be one of {', '.join(SPREADS)}, got {spread!r} "
                              f"(dataset.synthetic.spread=std is the paper's N(mean, var))")
        mean = torch.as_tensor(mean, dtype=torch.float32)
        var = torch.as_tensor(var, dtype=torch.float32)
        if mean.shape != var.shape:
            raise ConfigError(f"pixel statistics disagree in shape: mean {tuple(mean.shape)}, var {tuple(var.shape)}")
        if not bool(torch.all(var >= 0)):
            raise ConfigError("pixel variance has negative entries: the pixel_stats file is damaged")
        super().__init__(mean.shape)
        self.mean, self.std = mean, (var.sqrt() if spread == "std" else var.clone())
        self.bounds = (torch.full_like(mean, float(lo)), torch.full_like(mean, float(hi)))

    def __call__(self, gens, m, device="cpu"):
        z = self.standard(gens, m, device)
        x = z.mul_(self.std.to(z.device)).add_(self.mean.to(z.device))
        return self.clip(x)


class SimplexSampler(Sampler):
    """Each feature ~ N(mean_j, std_j), clipped to [0, 1], rows renormalised to sum 1.

    A row that clips to all zeros (vanishingly rare) becomes the uniform composition.
    """

    kind = "simplex"

    def __init__(self, mean, std):
        mean = torch.as_tensor(mean, dtype=torch.float32).reshape(-1)
        std = torch.as_tensor(std, dtype=torch.float32).reshape(-1)
        if mean.shape != std.shape:
            raise ConfigError(f"simplex statistics disagree in shape: mean {tuple(mean.shape)}, std {tuple(std.shape)}")
        super().__init__(mean.shape)
        self.mean, self.std = mean, std
        self.bounds = (torch.zeros_like(mean), torch.ones_like(mean))

    def __call__(self, gens, m, device="cpu"):
        z = self.standard(gens, m, device)
        x = self.clip(z.mul_(self.std.to(z.device)).add_(self.mean.to(z.device)))
        total = x.sum(-1, keepdim=True)
        empty = total <= 0
        x = torch.where(empty, torch.full_like(x, 1.0 / x.shape[-1]), x)
        return x.div_(torch.where(empty, torch.ones_like(total), total))


def make_sampler(kind: str, input_shape, **stats) -> Sampler:
    """Build the base distribution ``kind`` for inputs of ``input_shape``.

    Args:
        kind: ``normal``, ``pixel`` or ``simplex``.
        input_shape: One input's shape, e.g. ``(d,)`` or ``(1, 28, 28)``.
        **stats: ``pixel``: ``mean``, ``var`` (arrays reshaped to ``input_shape``), optional ``lo``, ``hi``,
            ``spread`` (``std``, the default, or ``variance``);
            ``simplex``: ``mean``, ``std`` (length d).

    Raises:
        ConfigError: unknown kind or missing statistics.
    """
    shape = tuple(int(s) for s in input_shape)
    if kind == "normal":
        return NormalSampler(shape)
    try:
        if kind == "pixel":
            mean = torch.as_tensor(stats["mean"], dtype=torch.float32).reshape(shape)
            var = torch.as_tensor(stats["var"], dtype=torch.float32).reshape(shape)
            return PixelSampler(mean, var, stats.get("lo", 0.0), stats.get("hi", 1.0), stats.get("spread", "std"))
        if kind == "simplex":
            return SimplexSampler(stats["mean"], stats["std"])
    except KeyError as exc:
        raise ConfigError(f"synthetic kind '{kind}' needs statistic {exc.args[0]!r}") from None
    except RuntimeError as exc:  # reshape of statistics to the input shape
        raise ConfigError(f"synthetic kind '{kind}': statistics do not fit input shape {shape} "
                          f"({' '.join(str(exc).split())})") from None
    raise ConfigError(f"unknown synthetic kind '{kind}': use one of {', '.join(KINDS)} "
                      f"(the dataset yaml's synthetic.kind)")


def numel(shape) -> int:
    """Number of entries of one input."""
    return int(math.prod(shape))
