"""One-hidden-layer tanh MLPs, single and stacked.

The paper's teacher (d -> 500 -> 1), students (d -> 25|50 -> 1) and the
generator of Kang & Kang (2021) (50 -> 500 -> d) are all ``Linear -> tanh ->
Linear``. :class:`MLPStack` holds R independent such networks ("replicas") in
one flat ``(R, P)`` parameter tensor, so that one batched matmul serves every
replica and one fused optimizer step updates them all. Its gradients are written
out by hand: for these tiny networks autograd's per-node bookkeeping costs more
than the arithmetic. :func:`mlp_module` builds the plain ``nn.Module`` used by
the one-model reference loop; both are initialised from the same draws by
:func:`init_mlp_params`, which is how equivalence tests compare them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import nn

from dfkd.errors import ConfigError


def tanh_(z: torch.Tensor) -> torch.Tensor:
    """In-place tanh. On CPU numpy's vectorised tanh is ~7x faster than torch's here."""
    if z.device.type == "cpu" and z.dtype == torch.float32 and z.is_contiguous() and not z.requires_grad:
        arr = z.numpy()
        np.tanh(arr, out=arr)
        return z
    return z.tanh_()


#: A batched product with at most this many output columns is computed transposed on the CPU.
NARROW = 32


def bmm(a: torch.Tensor, b: torch.Tensor, bias: torch.Tensor | None = None, alpha: float = 1.0) -> torch.Tensor:
    """Batched ``bias + alpha * a @ b`` for ``a (R, n, k)``, ``b (R, k, c)``, ``bias`` broadcastable to ``(R, n, c)``.

    On the CPU a product with few output columns (c <= 32, e.g. a gradient with respect to 12
    input features, or the generator's last layer) runs 1.5-1.8x faster as ``(b^T a^T)^T``
    (measured for R = 10, n = 50..200, k = 500): the GEMM kernels are made for wide results.
    The result is then a transposed view.
    """
    c, k = b.shape[-1], b.shape[-2]
    if a.device.type == "cpu" and c <= NARROW and k >= 4 * c:
        a_t, b_t = a.transpose(1, 2), b.transpose(1, 2)
        if bias is None:
            out = torch.bmm(b_t, a_t).transpose(1, 2)
            return out.mul_(alpha) if alpha != 1.0 else out
        return torch.baddbmm(bias.transpose(1, 2), b_t, a_t, alpha=alpha).transpose(1, 2)
    if bias is None:
        out = torch.bmm(a, b)
        return out.mul_(alpha) if alpha != 1.0 else out
    return torch.baddbmm(bias, a, b, alpha=alpha)


def _matvec(a: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Batched matrix-vector product ``a (R, n, k) @ v (R, k, 1)`` -> ``(R, n, 1)``.

    On the CPU, torch's batched matrix-vector paths are slow here (measured for R = 10, n = 50..319,
    k = 500: ``bmm`` 690 us, ``linalg.vecdot`` 120 us, numpy's ``matmul`` 33 us per call), so plain
    float32 CPU tensors that need no gradient go through numpy, sharing memory; others use ``vecdot``.
    """
    if (a.device.type == "cpu" and a.dtype == torch.float32 and v.dtype == torch.float32
            and not (a.requires_grad or v.requires_grad)):
        with np.errstate(all="ignore"):  # a diverged replica's NaN/inf is the engine's to detect, silently here
            return torch.from_numpy(np.matmul(a.detach().numpy(), v.detach().numpy()))
    return torch.linalg.vecdot(a, v.transpose(1, 2)).unsqueeze(-1)


def init_mlp_params(d_in: int, hidden: int, d_out: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Draw one network's parameters as ``nn.Linear`` does by default.

    ``nn.Linear`` uses kaiming-uniform with a = sqrt(5) for the weight, which is
    U(-1/sqrt(fan_in), 1/sqrt(fan_in)), and the same bound for the bias. Drawing
    them here from an explicit generator, in a fixed order, lets the batched and
    the reference implementations start from identical weights.

    Returns:
        ``{"w1": (hidden, d_in), "b1": (hidden,), "w2": (d_out, hidden), "b2": (d_out,)}``
        in ``nn.Linear`` layout.
    """

    def uniform(shape, fan_in):
        bound = 1.0 / math.sqrt(fan_in)
        return torch.rand(shape, generator=generator) * (2 * bound) - bound

    return {
        "w1": uniform((hidden, d_in), d_in),
        "b1": uniform((hidden,), d_in),
        "w2": uniform((d_out, hidden), hidden),
        "b2": uniform((d_out,), hidden),
    }


def mlp_module(params: dict[str, torch.Tensor]) -> nn.Sequential:
    """A plain ``Linear -> Tanh -> Linear`` module holding copies of ``params``."""
    hidden, d_in = params["w1"].shape
    d_out = params["w2"].shape[0]
    net = nn.Sequential(nn.Linear(d_in, hidden), nn.Tanh(), nn.Linear(hidden, d_out))
    with torch.no_grad():
        net[0].weight.copy_(params["w1"])
        net[0].bias.copy_(params["b1"])
        net[2].weight.copy_(params["w2"])
        net[2].bias.copy_(params["b2"])
    return net


def module_params(net: nn.Sequential) -> dict[str, torch.Tensor]:
    """Inverse of :func:`mlp_module`: detached copies in ``nn.Linear`` layout."""
    return {
        "w1": net[0].weight.detach().clone(),
        "b1": net[0].bias.detach().clone(),
        "w2": net[2].weight.detach().clone(),
        "b2": net[2].bias.detach().clone(),
    }


def flat_buffer(flat: torch.Tensor | None, replicas: int, n_params: int, device: torch.device) -> torch.Tensor:
    """The ``(R, P)`` parameter tensor of a stack: ``flat`` checked for that shape, or zeros when it is None.

    Raises:
        ValueError: ``flat`` has another shape.
    """
    if flat is None:
        return torch.zeros(replicas, n_params, device=device)
    if tuple(flat.shape) != (replicas, n_params):
        raise ValueError(f"flat parameters have shape {tuple(flat.shape)}, expected {(replicas, n_params)}")
    return flat


@dataclass(frozen=True)
class FeatureLayer:
    """One hidden layer of a frozen stack, opened up for methods that model its features (``soft_target``).

    The callables run on plain torch ops, so autograd differentiates them with respect to their inputs;
    they read the stack's parameters as they are when called (the weights themselves never need gradients).

    Attributes:
        name: The layer's name (one of the stack's ``feature_layers``).
        weight: Its incoming weights ``(R, h, fan_in)`` (``nn.Linear`` layout: one row per unit).
        bias: Its bias ``(R, h)``.
        pre: ``x (R, n, *input_shape) -> (R, n, h)``, the layer's pre-activations for inputs x.
        head: ``a (R, n, h) -> (R, n)``, the network's scalar output given the layer's pre-activations a.
        activation: The layer's elementwise activation phi (``torch.tanh``, ``F.softplus``).
        forward, backward: An optional hand-written path, without autograd: ``forward(x) -> (out (R, n), cache)``
            and ``backward(cache, g_out (R, n), g_act: float) -> (R, n, *input_shape)``, the gradient with
            respect to x of ``sum(g_out * out) + g_act * sum(phi(a)^2)`` (``backward`` consumes the cache).
            None where only the autograd path exists.
    """

    name: str
    weight: torch.Tensor
    bias: torch.Tensor
    pre: Callable[[torch.Tensor], torch.Tensor]
    head: Callable[[torch.Tensor], torch.Tensor]
    activation: Callable[[torch.Tensor], torch.Tensor]
    forward: Callable | None = None
    backward: Callable | None = None


def unknown_layer(name, names, arch: str) -> ConfigError:
    """The one-line error for a layer name a stack does not have."""
    return ConfigError(f"layer '{name}' is not a layer of the {arch} teacher: it has {', '.join(names)}")


@dataclass
class Cache:
    """What a forward pass keeps for the backward pass."""

    x: torch.Tensor  # (R, n, d_in)
    a1: torch.Tensor  # (R, n, hidden), tanh activations


class MLPStack:
    """R independent ``Linear(d_in, h) -> tanh -> Linear(h, d_out)`` networks.

    Parameters live in ``self.flat`` of shape ``(R, P)``; ``w1 (R, d_in, h)``,
    ``b1 (R, 1, h)``, ``w2 (R, h, d_out)``, ``b2 (R, 1, d_out)`` are views of it
    (weights stored transposed relative to ``nn.Linear`` so that ``x @ w1`` needs
    no transpose). Inputs are ``(R, n, d_in)``; replica r only ever sees row r.
    It answers the model-stack protocol of ``docs/engine-contract.md``.
    """

    differentiable = True

    def __init__(self, d_in: int, hidden: int, d_out: int, replicas: int, device="cpu", flat=None):
        self.d_in, self.hidden, self.d_out, self.replicas = d_in, hidden, d_out, replicas
        self.device = torch.device(device)
        self.sizes = [d_in * hidden, hidden, hidden * d_out, d_out]
        self.n_params = sum(self.sizes)
        self.flat = flat_buffer(flat, replicas, self.n_params, self.device)
        self.w1, self.b1, self.w2, self.b2 = self.views(self.flat)

    @property
    def input_shape(self) -> tuple:
        """One input's shape, ``(d_in,)``."""
        return (self.d_in,)

    # -- layout -------------------------------------------------------------
    def views(self, flat: torch.Tensor):
        """Split an ``(R, P)`` tensor (parameters or gradients) into the four shaped views."""
        r, (d, h, o) = flat.shape[0], (self.d_in, self.hidden, self.d_out)
        parts = torch.split(flat, self.sizes, dim=1)
        return (
            parts[0].view(r, d, h),
            parts[1].view(r, 1, h),
            parts[2].view(r, h, o),
            parts[3].view(r, 1, o),
        )

    @classmethod
    def from_params(cls, params: list[dict[str, torch.Tensor]], device="cpu") -> "MLPStack":
        """Stack per-replica parameter dicts (``nn.Linear`` layout) into one stack."""
        hidden, d_in = params[0]["w1"].shape
        d_out = params[0]["w2"].shape[0]
        stack = cls(d_in, hidden, d_out, len(params), device)
        with torch.no_grad():
            for r, p in enumerate(params):
                stack.w1[r].copy_(p["w1"].t())
                stack.b1[r, 0].copy_(p["b1"])
                stack.w2[r].copy_(p["w2"].t())
                stack.b2[r, 0].copy_(p["b2"])
        return stack

    @classmethod
    def init(cls, d_in, hidden, d_out, generators: list[torch.Generator], device="cpu") -> "MLPStack":
        """Fresh networks, replica r initialised from ``generators[r]``."""
        return cls.from_params([init_mlp_params(d_in, hidden, d_out, g) for g in generators], device)

    def replica_params(self, r: int, flat: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Replica r's parameters in ``nn.Linear`` layout (from ``flat`` if given, e.g. a best copy)."""
        w1, b1, w2, b2 = self.views(self.flat if flat is None else flat)
        return {
            "w1": w1[r].t().detach().cpu().clone(),
            "b1": b1[r, 0].detach().cpu().clone(),
            "w2": w2[r].t().detach().cpu().clone(),
            "b2": b2[r, 0].detach().cpu().clone(),
        }

    # -- compute ------------------------------------------------------------
    def forward(self, x: torch.Tensor, flat: torch.Tensor | None = None, keep: bool = False, train: bool = False):
        """Outputs ``(R, n, d_out)``; with ``keep`` also the :class:`Cache` for backward.

        ``train`` (dropout on) is part of the protocol; these networks have no dropout.
        """
        w1, b1, w2, b2 = (self.w1, self.b1, self.w2, self.b2) if flat is None else self.views(flat)
        a1 = tanh_(torch.baddbmm(b1, x, w1))
        if self.d_out == 1:
            out = _matvec(a1, w2).add_(b2)
        else:
            out = bmm(a1, w2, b2).contiguous()
        return (out, Cache(x, a1)) if keep else out

    def predict(self, x: torch.Tensor, flat: torch.Tensor | None = None) -> torch.Tensor:
        """Scalar outputs ``(R, n)`` for single-output networks."""
        return self.forward(x, flat).squeeze(-1)

    def backward(self, cache: Cache, g_out: torch.Tensor, params: bool = True, inputs: bool = False):
        """Back-propagate ``g_out`` (d loss / d output, ``(R, n, d_out)`` or ``(R, n)``).

        Consumes ``cache`` (its activations are overwritten to save memory passes).
        The hidden-layer arrays ``(R, n, hidden)`` dominate the cost for small
        inputs, so the number of passes over them is kept low. For a scalar
        output the pre-activation gradient factors as ``g * D`` with
        ``D = w2 - w2 * a1^2`` (one row vector per row), and ``g`` is applied to
        whichever side of the following matmul is smaller.

        Returns:
            ``(grad_flat or None, grad_x or None)``: parameter gradients as an
            ``(R, P)`` tensor laid out like ``self.flat``, and/or the gradient
            with respect to the inputs, ``(R, n, d_in)``.
        """
        if g_out.dim() == 2:
            g_out = g_out.unsqueeze(-1)
        a1, x = cache.a1, cache.x
        grad = gx = None
        if not params and getattr(self, "_frozen_m", None) is not None:
            sq = a1.mul_(a1)
            return None, bmm(sq, self._frozen_m, self._frozen_c, alpha=-1.0).mul_(g_out)
        if params:
            grad = torch.empty_like(self.flat)
            gw1, gb1, gw2, gb2 = self.views(grad)
            if self.d_out == 1:
                gw2.copy_(torch.linalg.vecdot(a1.transpose(1, 2), g_out.transpose(1, 2)).unsqueeze(-1))
            else:
                gw2.copy_(bmm(a1.transpose(1, 2), g_out))
            gb2.copy_(g_out.sum(1, keepdim=True))
        sq = a1.mul_(a1)  # a1 is not needed any more
        if self.d_out == 1:
            w2row = self.w2.transpose(1, 2)  # (R, 1, h)
            dz = torch.addcmul(w2row, sq, w2row, value=-1.0)  # d out / d pre-activation, per row
            if params:
                if self.d_in < self.hidden:
                    gw1.copy_(torch.bmm((x * g_out).transpose(1, 2), dz))
                    gb1.copy_(torch.bmm(g_out.transpose(1, 2), dz))
                else:
                    gz1 = dz * g_out
                    gw1.copy_(torch.bmm(x.transpose(1, 2), gz1))
                    gb1.copy_(gz1.sum(1, keepdim=True))
            if inputs:
                gx = bmm(dz, self.w1.transpose(1, 2)).mul_(g_out)
        else:
            ga1 = torch.bmm(g_out, self.w2.transpose(1, 2))
            gz1 = torch.addcmul(ga1, ga1, sq, value=-1.0)
            if params:
                gw1.copy_(torch.bmm(x.transpose(1, 2), gz1))
                gb1.copy_(gz1.sum(1, keepdim=True))
            if inputs:
                gx = bmm(gz1, self.w1.transpose(1, 2))
        return grad, gx

    def freeze(self) -> "MLPStack":
        """Mark the weights as fixed (a teacher) and precompute what input gradients reuse.

        For a scalar output, d out / d x = w1 (w2 - w2 * a1^2) = c - (a1^2) M^T with
        ``c = w1 w2`` and ``M = w1 * w2^T``: one pass less over the hidden
        activations per input gradient. Call again if the weights change.
        """
        self._frozen_m = None
        if self.d_out == 1 and self.d_in <= 64:  # measured: a gain for small inputs only
            w2row = self.w2.transpose(1, 2)  # (R, 1, h)
            self._frozen_m = (self.w1 * w2row).transpose(1, 2).contiguous()  # (R, h, d_in)
            self._frozen_c = torch.bmm(w2row, self.w1.transpose(1, 2))  # (R, 1, d_in)
        return self

    def flops_forward(self, n: int) -> float:
        """Multiply-add FLOPs of one forward pass over n rows, per replica."""
        return 2.0 * n * (self.d_in * self.hidden + self.hidden * self.d_out)

    #: The layers :meth:`feature_layer` opens up.
    feature_layers = ("hidden",)

    def feature_layer(self, name: str) -> FeatureLayer:
        """The hidden layer (``name = "hidden"``): incoming weights ``w1[r].T``, bias ``b1``,
        ``pre(x) = x @ w1 + b1`` and ``head(a) = tanh(a) @ w2 + b2`` (single-output stacks only).

        Raises:
            ConfigError: an unknown name (the message lists the names there are) or a stack with several outputs.
        """
        if name not in self.feature_layers:
            raise unknown_layer(name, self.feature_layers, "mlp")
        if self.d_out != 1:
            raise ConfigError(f"the hidden layer's head needs a single-output network, this one has {self.d_out}")

        def pre(x: torch.Tensor) -> torch.Tensor:
            return torch.baddbmm(self.b1, x, self.w1)

        def head(a: torch.Tensor) -> torch.Tensor:  # vecdot: measured faster than a 1-column bmm under autograd
            return torch.linalg.vecdot(torch.tanh(a), self.w2.transpose(1, 2)) + self.b2[:, :, 0]

        def forward(x: torch.Tensor):
            with torch.no_grad():
                a1 = tanh_(torch.baddbmm(self.b1, x, self.w1))
                return _matvec(a1, self.w2).squeeze(-1).add_(self.b2[:, :, 0]), a1

        def backward(a1: torch.Tensor, g_out: torch.Tensor, g_act: float) -> torch.Tensor:
            # d/da = (g_out w2 + 2 g_act tanh(a)) (1 - tanh(a)^2), then d/dx = d/da w1^T: measured 2-3x faster
            # than autograd on the same loss (R = 10, 250 rows, d = 12..26, h = 500)
            with torch.no_grad():
                g_a = torch.addcmul(a1 * (2.0 * g_act), g_out.unsqueeze(-1), self.w2.transpose(1, 2))
                g_a.sub_(g_a * a1.mul_(a1))
                return bmm(g_a, self.w1.transpose(1, 2))

        return FeatureLayer(name, self.w1.transpose(1, 2), self.b1[:, 0], pre, head, torch.tanh, forward, backward)


#: The kind of dataset input (``Dataset.inputs``) this architecture takes.
INPUTS = "table"


def build_stack(input_shape, generators: list[torch.Generator], device="cpu", hidden: int = 50) -> MLPStack:
    """A fresh student stack ``Linear(d, hidden) -> tanh -> Linear(hidden, 1)``, replica r from ``generators[r]``.

    The builder every model module offers (see :func:`dfkd.models.build_stack`).
    """
    d = int(math.prod(input_shape))
    return MLPStack.init(d, int(hidden), 1, generators, device=device)
