"""Gaussian radial-basis-function networks, single and stacked (the protein student).

The paper's protein student (section 3.6) is "a fully connected Gaussian kernel
radial basis function layer with output size of 100, followed by a fully
connected linear layer". Written here from that description:

    phi_k(x) = exp(-||x - c_k||^2 / sigma_k^2),   sigma_k = exp(s_k)
    S(x)     = sum_k w_k phi_k(x) + b

**Width parameterisation.** Each centre c_k has its own learnable width,
stored as its logarithm s_k (so sigma_k stays positive without a constraint;
the Gaussian is of the distance divided by sigma_k, not of the squared
distance times a free precision). Initialisation: centres ~ N(0, 1), s_k = 0
(every width 1), and the output layer as ``nn.Linear(K, 1)`` initialises
itself, U(-1/sqrt(K), 1/sqrt(K)) for weight and bias. This is the
parameterisation and initialisation of the RBF layer the authors' notebook
used; with amino-acid fractions as inputs (each about 0.05) most basis values
start near exp(-20), so the student first learns its bias and widths.

:class:`RBFStack` holds R independent such networks in one flat ``(R, P)``
parameter tensor and answers the model-stack protocol of
``docs/engine-contract.md`` with hand-written gradients; :class:`RBFNet` is the
plain ``nn.Module`` (autograd) used as the reference in tests. Both start from
the same draws of :func:`init_rbf_params`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from dfkd.errors import ConfigError
from dfkd.models.mlp import flat_buffer


def init_rbf_params(d_in: int, centres: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Draw one network's parameters (fixed order: centres, then output weight, then bias).

    Returns:
        ``{"centres": (K, d_in), "log_sigmas": (K,), "weight": (1, K), "bias": (1,)}``;
        weight and bias in ``nn.Linear(K, 1)`` layout.
    """
    bound = 1.0 / math.sqrt(centres)
    return {
        "centres": torch.randn((centres, d_in), generator=generator),
        "log_sigmas": torch.zeros(centres),
        "weight": torch.rand((1, centres), generator=generator) * (2 * bound) - bound,
        "bias": torch.rand((1,), generator=generator) * (2 * bound) - bound,
    }


class RBFNet(nn.Module):
    """One Gaussian RBF network as a plain module (autograd; the reference implementation)."""

    def __init__(self, params: dict[str, torch.Tensor]):
        super().__init__()
        self.centres = nn.Parameter(params["centres"].detach().clone())
        self.log_sigmas = nn.Parameter(params["log_sigmas"].detach().clone())
        self.output = nn.Linear(self.centres.shape[0], 1)
        with torch.no_grad():
            self.output.weight.copy_(params["weight"])
            self.output.bias.copy_(params["bias"])

    def basis(self, x: torch.Tensor) -> torch.Tensor:
        """Basis values ``(n, K)`` from explicit differences (no expansion trick)."""
        dist = (x[:, None, :] - self.centres[None]).pow(2).sum(-1).sqrt()
        return torch.exp(-(dist / torch.exp(self.log_sigmas)).pow(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Outputs ``(n, 1)``."""
        return self.output(self.basis(x))


@dataclass
class RBFCache:
    """What a forward pass keeps for the backward pass (and the parameters it used)."""

    x: torch.Tensor  # (R, n, d)
    sq: torch.Tensor  # (R, n, K) squared distances
    phi: torch.Tensor  # (R, n, K) basis values
    inv: torch.Tensor  # (R, 1, K) 1 / sigma^2
    centres: torch.Tensor  # (R, K, d)
    weight: torch.Tensor  # (R, 1, K)


class RBFStack:
    """R independent Gaussian RBF networks ``d_in -> K basis functions -> 1``.

    Parameters live in ``self.flat`` ``(R, P)``, laid out per replica as
    centres ``(K, d_in)``, log-widths ``(K,)``, output weight ``(K,)`` and bias
    ``(1,)``. Inputs are ``(R, n, d_in)``; replica r only ever sees row r. A
    ``flat`` passed to :meth:`forward` may hold fewer replicas than the stack
    (e.g. ``flat[r:r+1]`` to evaluate replica r alone on ``(1, n, d_in)``).
    """

    differentiable = True

    def __init__(self, d_in: int, centres: int, replicas: int, device="cpu", flat=None):
        self.d_in, self.centres, self.replicas, self.d_out = d_in, centres, replicas, 1
        self.input_shape = (d_in,)
        self.device = torch.device(device)
        self.sizes = [centres * d_in, centres, centres, 1]
        self.n_params = sum(self.sizes)
        self.flat = flat_buffer(flat, replicas, self.n_params, self.device)

    # -- layout -------------------------------------------------------------
    def views(self, flat: torch.Tensor):
        """Split an ``(R, P)`` tensor into centres ``(R, K, d)``, log-widths ``(R, 1, K)``,
        weight ``(R, 1, K)`` and bias ``(R, 1, 1)`` views."""
        r, k, d = flat.shape[0], self.centres, self.d_in
        c, s, w, b = torch.split(flat, self.sizes, dim=1)
        return c.view(r, k, d), s.view(r, 1, k), w.view(r, 1, k), b.view(r, 1, 1)

    @classmethod
    def from_params(cls, params: list[dict[str, torch.Tensor]], device="cpu") -> "RBFStack":
        """Stack per-replica parameter dicts (as :func:`init_rbf_params` returns them)."""
        k, d = params[0]["centres"].shape
        stack = cls(d, k, len(params), device)
        c, s, w, b = stack.views(stack.flat)
        with torch.no_grad():
            for r, p in enumerate(params):
                c[r].copy_(p["centres"])
                s[r, 0].copy_(p["log_sigmas"])
                w[r, 0].copy_(p["weight"].reshape(-1))
                b[r, 0].copy_(p["bias"].reshape(1))
        return stack

    @classmethod
    def init(cls, d_in: int, centres: int, generators: list[torch.Generator], device="cpu") -> "RBFStack":
        """Fresh networks, replica r initialised from ``generators[r]``."""
        return cls.from_params([init_rbf_params(d_in, centres, g) for g in generators], device)

    def replica_params(self, r: int, flat: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Replica r's parameters as CPU tensors (from ``flat`` if given, e.g. a best copy)."""
        c, s, w, b = self.views(self.flat if flat is None else flat)
        return {
            "centres": c[r].detach().cpu().clone(),
            "log_sigmas": s[r, 0].detach().cpu().clone(),
            "weight": w[r].detach().cpu().clone(),  # (1, K): nn.Linear layout
            "bias": b[r, 0].detach().cpu().clone(),
        }

    # -- compute ------------------------------------------------------------
    def forward(self, x: torch.Tensor, flat: torch.Tensor | None = None, keep: bool = False, train: bool = False):
        """Outputs ``(R, n, 1)``; with ``keep`` also the :class:`RBFCache` for backward.

        ``train`` (dropout on) is part of the stack protocol; this network has no dropout.

        Squared distances use ``|x|^2 - 2 x.c + |c|^2`` (one batched matmul
        instead of an ``(R, n, K, d)`` difference tensor), clamped at 0 against
        rounding.
        """
        c, s, w, b = self.views(self.flat if flat is None else flat)
        x2 = (x * x).sum(-1, keepdim=True)  # (R, n, 1)
        c2 = (c * c).sum(-1).unsqueeze(1)  # (R, 1, K)
        sq = torch.baddbmm(x2 + c2, x, c.transpose(1, 2), alpha=-2.0).clamp_min_(0.0)
        inv = torch.exp(-2.0 * s)  # 1 / sigma^2
        phi = torch.exp(-(sq * inv))
        out = torch.linalg.vecdot(phi, w).unsqueeze(-1).add_(b)
        return (out, RBFCache(x, sq, phi, inv, c, w)) if keep else out

    def predict(self, x: torch.Tensor, flat: torch.Tensor | None = None) -> torch.Tensor:
        """Scalar outputs ``(R, n)``."""
        return self.forward(x, flat).squeeze(-1)

    def backward(self, cache: RBFCache, g_out: torch.Tensor, params: bool = True, inputs: bool = False):
        """Back-propagate ``g_out`` = d loss / d output (``(R, n)`` or ``(R, n, 1)``).

        With u = g * w_k * phi_k and z_k = -sq_k / sigma_k^2: d loss / d sq_k =
        -u / sigma_k^2, d loss / d s_k = 2 u sq_k / sigma_k^2, and
        d sq_k / d c_k = 2 (c_k - x) = -d sq_k / d x.

        Returns:
            ``(grad_flat or None, grad_x or None)``: ``(R', P)`` laid out like the
            parameters the forward pass used, and ``(R, n, d_in)``.
        """
        g = g_out.squeeze(-1) if g_out.dim() == 3 else g_out  # (R, n)
        x, sq, phi, inv, c = cache.x, cache.sq, cache.phi, cache.inv, cache.centres
        u = phi * cache.weight * g.unsqueeze(-1)  # (R, n, K)
        g_sq = -(u * inv)  # (R, n, K)
        grad = gx = None
        if params:
            grad = torch.empty(x.shape[0], self.n_params, device=x.device, dtype=x.dtype)
            gc, gs, gw, gb = self.views(grad)
            gw.copy_(torch.bmm(g.unsqueeze(1), phi))  # (R, 1, K)
            gb.copy_(g.sum(1).view(-1, 1, 1))
            gs.copy_((u * sq).sum(1, keepdim=True).mul_(inv).mul_(2.0))
            gc.copy_((c * g_sq.sum(1).unsqueeze(-1) - torch.bmm(g_sq.transpose(1, 2), x)).mul_(2.0))
        if inputs:
            gx = (x * g_sq.sum(-1, keepdim=True) - torch.bmm(g_sq, c)).mul_(2.0)
        return grad, gx

    def flops_forward(self, n: int) -> float:
        """Multiply-add FLOPs of one forward pass over n rows, per replica."""
        return 2.0 * n * self.centres * (self.d_in + 1)


#: The kind of dataset input (``Dataset.inputs``) this architecture takes.
INPUTS = "table"


def build_stack(input_shape, generators: list[torch.Generator], device="cpu", centres: int = 100) -> RBFStack:
    """A fresh student stack of ``centres`` Gaussian basis functions and a linear output, replica r from
    ``generators[r]`` (the builder every model module offers; see :func:`dfkd.models.build_stack`)."""
    if isinstance(centres, bool) or not isinstance(centres, int) or centres < 1:
        raise ConfigError(f"student.arch_params.centres must be a positive integer, got {centres!r}")
    d = int(math.prod(input_shape))
    return RBFStack.init(d, centres, generators, device=device)
