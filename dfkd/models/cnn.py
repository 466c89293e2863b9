"""Convolutional stacks for image inputs: the MNIST regression CNN and an image generator.

:class:`CNNStack` holds R independent copies of the network of paper Table 2
(Wang et al. 2020), with f filters::

    Conv 3x3xf ReLU -> Conv 3x3x2f softplus -> MaxPool 2 -> Conv 3x3x4f softplus -> MaxPool 2
    -> Flatten -> FC 500 softplus -> Dropout 0.5 -> FC 100 softplus -> Dropout 0.25
    -> FC 20 softplus -> FC 1 softplus

The teacher has f = 10, the student f = 5. Padding is not stated in the paper;
we use none ("valid", the default of both PyTorch and Keras), so a 28x28 input
gives 26, 24, 12, 10 and 5x5 maps and a flattened width of 4f * 25.

All replicas run in one pass: the images of replica r occupy channel group r
and every convolution is one grouped convolution (``groups = R``); the fully
connected layers are batched matmuls. Parameters live in one flat ``(R, P)``
tensor, as in :class:`dfkd.models.mlp.MLPStack`, so the same optimizers act on
them; gradients come from autograd (for these layers its cost is the
arithmetic, unlike for the tiny tabular MLPs). Dropout masks are drawn per
replica from its own generator, so a replica's numbers do not depend on which
others share its stack.

:class:`ConvGeneratorStack` is the generator the ``generator`` method uses for
images (our choice; the paper does not describe its image generator): a DCGAN-
style decoder ``Linear(latent, 2c*7*7) ReLU -> ConvT 4x4/2 to c ReLU -> ConvT 4x4/2
to 1, sigmoid``, so its pixels lie in (0, 1).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from dfkd.core.state import generator_states, set_generator_states
from dfkd.errors import ConfigError
from dfkd.models.mlp import FeatureLayer, flat_buffer, unknown_layer


#: Padding names the configs may use ("valid" = 0, "same" = 1 for the 3x3 convolutions), besides 0 and 1.
PADDINGS = {"valid": 0, "same": 1}


def padding_value(padding) -> int:
    """The convolution padding as the number of pixels (0 or 1) from ``0``/``1``/``"valid"``/``"same"``.

    Raises:
        ConfigError: any other value (one line naming the choices).
    """
    if isinstance(padding, str) and padding.strip().lower() in PADDINGS:
        return PADDINGS[padding.strip().lower()]
    if not isinstance(padding, bool) and isinstance(padding, int) and padding in (0, 1):
        return int(padding)
    raise ConfigError(f"unknown CNN padding {padding!r}: use valid (or 0: no padding, the default) or same "
                      f"(or 1: the 3x3 maps keep their size), e.g. teacher.params.padding=same")


def glorot_params(stack, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """One replica's parameters drawn as Keras initialises them by default: weights Glorot-uniform,
    U(-sqrt(6 / (fan_in + fan_out)), +sqrt(...)), with fan_out = outputs x kernel area, and zero biases."""
    out = {}
    for name, shape, fan_in in stack.layers:
        if name.endswith(".bias"):
            out[name] = torch.zeros(shape)
            continue
        fan_out = shape[0] * (math.prod(shape[2:]) if len(shape) > 2 else 1)
        bound = math.sqrt(6.0 / (fan_in + fan_out))
        out[name] = torch.rand(shape, generator=generator) * (2 * bound) - bound
    return out


def _uniform(shape, fan_in: int, generator: torch.Generator) -> torch.Tensor:
    """PyTorch's default init of conv and linear layers: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weight and bias."""
    bound = 1.0 / math.sqrt(fan_in)
    return torch.rand(shape, generator=generator) * (2 * bound) - bound


class _FlatStack:
    """R replicas of a network whose parameters are ``layers`` = [(name, shape, fan_in)], flattened per replica."""

    differentiable = True

    def __init__(self, layers, replicas: int, device="cpu", flat=None):
        self.layers = layers
        self.replicas = replicas
        self.device = torch.device(device)
        self.sizes = [math.prod(shape) for _, shape, _ in layers]
        self.n_params = sum(self.sizes)
        self.flat = flat_buffer(flat, replicas, self.n_params, self.device)
        self.generators = None
        self._frozen = False

    def views(self, flat: torch.Tensor) -> list[torch.Tensor]:
        """The per-layer views ``(R, *shape)`` of an ``(R, P)`` tensor."""
        r = flat.shape[0]
        return [part.view((r,) + tuple(shape)) for part, (_, shape, _) in
                zip(torch.split(flat, self.sizes, dim=1), self.layers)]

    def init_params(self, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """One replica's parameters drawn as PyTorch initialises these layers by default, in layer order."""
        return {name: _uniform(shape, fan_in, generator) for name, shape, fan_in in self.layers}

    def load(self, params: list[dict[str, torch.Tensor]]) -> None:
        """Copy per-replica parameter dicts (nn.Module layout) into ``flat``."""
        with torch.no_grad():
            for view, (name, _, _) in zip(self.views(self.flat), self.layers):
                for r, p in enumerate(params):
                    view[r].copy_(p[name])

    def replica_params(self, r: int, flat: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Replica r's parameters as CPU tensors in nn.Module layout (from ``flat`` if given)."""
        views = self.views(self.flat if flat is None else flat)
        return {name: v[r].detach().cpu().clone() for v, (name, _, _) in zip(views, self.layers)}

    def freeze(self):
        """Mark the weights as fixed (a teacher): forward passes then track gradients for inputs only."""
        self._frozen = True
        return self

    # -- compute ----------------------------------------------------------------
    def _run(self, params: list[torch.Tensor], x: torch.Tensor, train: bool) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor, flat: torch.Tensor | None = None, keep: bool = False, train: bool = False):
        """Outputs ``(R, n, ...)``; with ``keep`` also a cache for :meth:`backward`. ``train``: dropout on."""
        flat = self.flat if flat is None else flat
        if not keep:
            with torch.no_grad():
                return self._run(self.views(flat), x, train)
        with torch.enable_grad():
            p = flat.detach().requires_grad_(not self._frozen)
            xin = x.detach().requires_grad_(True)
            out = self._run(self.views(p), xin, train)
        return out.detach(), (out, xin, p)

    def predict(self, x: torch.Tensor, flat: torch.Tensor | None = None) -> torch.Tensor:
        """Scalar outputs ``(R, n)`` (no dropout)."""
        return self.forward(x, flat).reshape(x.shape[0], x.shape[1])

    def backward(self, cache, g_out: torch.Tensor, params: bool = True, inputs: bool = False):
        """Back-propagate ``g_out`` (d loss / d output) through the graph kept by ``forward(keep=True)``.

        Returns:
            ``(grad_flat (R, P) or None, grad_x or None)``.
        """
        out, xin, p = cache
        want = ([p] if params else []) + ([xin] if inputs else [])
        if params and not p.requires_grad:
            raise RuntimeError("parameter gradients of a frozen stack were requested")
        grads = torch.autograd.grad(out, want, g_out.reshape(out.shape))
        grad_flat = grads[0] if params else None
        gx = grads[-1] if inputs else None
        return grad_flat, gx

    def _dropout(self, h: torch.Tensor, p: float) -> torch.Tensor:
        """Inverted dropout on ``(R, n, k)`` with a mask per replica from its own generator."""
        if p <= 0:
            return h
        if self.generators is None:
            raise RuntimeError("this stack has no generators for dropout masks")
        mask = torch.empty(h.shape, device=h.device)
        for r, g in enumerate(self.generators):
            if g.device == mask.device:
                mask[r].bernoulli_(1.0 - p, generator=g)
            else:
                mask[r].copy_(torch.empty(h.shape[1:]).bernoulli_(1.0 - p, generator=g))
        return h * mask.div_(1.0 - p)


def _grouped(x: torch.Tensor) -> torch.Tensor:
    """``(R, n, C, H, W)`` -> ``(n, R*C, H, W)``: replica r's images in channel group r.

    Channels-last memory: measured on CPU, grouped convolutions run about twice as
    fast in it as in the default layout (and faster than a loop over replicas).
    """
    r, n = x.shape[:2]
    h = x.transpose(0, 1).reshape((n, r * x.shape[2]) + tuple(x.shape[3:]))
    return h.contiguous(memory_format=torch.channels_last)


class CNNStack(_FlatStack):
    """R copies of the MNIST regression CNN of paper Table 2 with ``filters`` = f.

    Args:
        filters: f (10 for the teacher, 5 for the student).
        replicas: R.
        input_shape: ``(C, H, W)``, ``(1, 28, 28)`` for MNIST.
        hidden: widths of the fully connected layers before the output (500, 100, 20).
        dropout: dropout after each of those layers (0.5, 0.25, 0).
        padding: convolution padding (0 or "valid", our choice; 1 or "same").
    """

    has_dropout = True

    def __init__(self, filters: int, replicas: int, input_shape=(1, 28, 28), hidden=(500, 100, 20),
                 dropout=(0.5, 0.25, 0.0), padding: int = 0, device="cpu", flat=None):
        c, h, w = (int(s) for s in input_shape)
        f, self.padding = int(filters), padding_value(padding)
        if f <= 0 or len(dropout) != len(hidden):
            raise ConfigError(f"CNN needs filters > 0 and one dropout rate per hidden layer, got filters={filters}, "
                              f"hidden={list(hidden)}, dropout={list(dropout)}")
        k = 3
        shrink = 2 - 2 * self.padding  # per 3x3 conv
        side_h, side_w = h - 2 * shrink, w - 2 * shrink  # conv1, conv2
        side_h, side_w = side_h // 2, side_w // 2
        side_h, side_w = side_h - shrink, side_w - shrink  # conv3
        side_h, side_w = side_h // 2, side_w // 2
        if side_h <= 0 or side_w <= 0:
            raise ConfigError(f"input {input_shape} is too small for the CNN with padding {padding}")
        self.filters, self.input_shape = f, (c, h, w)
        self.hidden, self.dropout = tuple(int(x) for x in hidden), tuple(float(x) for x in dropout)
        self.flat_width = 4 * f * side_h * side_w
        layers = [
            ("conv1.weight", (f, c, k, k), c * k * k), ("conv1.bias", (f,), c * k * k),
            ("conv2.weight", (2 * f, f, k, k), f * k * k), ("conv2.bias", (2 * f,), f * k * k),
            ("conv3.weight", (4 * f, 2 * f, k, k), 2 * f * k * k), ("conv3.bias", (4 * f,), 2 * f * k * k),
        ]
        widths = [self.flat_width, *self.hidden, 1]
        for i in range(len(widths) - 1):
            layers += [(f"fc{i + 1}.weight", (widths[i + 1], widths[i]), widths[i]),
                       (f"fc{i + 1}.bias", (widths[i + 1],), widths[i])]
        super().__init__(layers, replicas, device, flat)

    @classmethod
    def init(cls, filters: int, generators: list[torch.Generator], device="cpu", **kw) -> "CNNStack":
        """Fresh networks, replica r initialised from ``generators[r]`` (which then also draw its dropout masks)."""
        stack = cls(filters, len(generators), device=device, **kw)
        stack.load([stack.init_params(g) for g in generators])
        stack.generators = generators
        return stack

    @classmethod
    def from_params(cls, params: list[dict], filters: int, device="cpu", generators=None, **kw) -> "CNNStack":
        """Stack per-replica parameter dicts (nn.Module layout, as :meth:`replica_params` gives)."""
        stack = cls(filters, len(params), device=device, **kw)
        stack.load(params)
        stack.generators = generators
        return stack

    def _convs(self, params, x):
        """The convolutional part: images ``(R, n, C, H, W)`` -> flattened maps ``(R, n, flat_width)``."""
        r, n = x.shape[:2]
        it = iter(params[:6])
        h = _grouped(x)
        for i, act in enumerate((F.relu, F.softplus, F.softplus)):
            w, b = next(it), next(it)
            h = F.conv2d(h, w.reshape((-1,) + tuple(w.shape[2:])), b.reshape(-1), padding=self.padding, groups=r)
            h = act(h)
            if i >= 1:
                h = F.max_pool2d(h, 2)
        return h.reshape(n, r, -1).transpose(0, 1)  # (R, n, 4f*s*s), each replica's maps flattened C-major

    def _fc_pre(self, params, i: int, h):
        """Pre-activations of fully connected layer ``fc{i + 1}`` for its inputs ``h (R, n, fan_in)``."""
        w, b = params[6 + 2 * i], params[7 + 2 * i]
        return torch.baddbmm(b.unsqueeze(1), h, w.transpose(1, 2))

    def _run(self, params, x, train):
        h = self._convs(params, x)
        for i in range(len(self.hidden) + 1):
            h = F.softplus(self._fc_pre(params, i, h))
            if train and i < len(self.dropout):
                h = self._dropout(h, self.dropout[i])
        return h  # (R, n, 1)

    @property
    def feature_layers(self) -> tuple:
        """The layers :meth:`feature_layer` opens up: the hidden fully connected ones, ``fc1`` (after the
        convolutions) to ``fc{len(hidden)}`` (FC-500, FC-100 and FC-20 for the paper's network)."""
        return tuple(f"fc{i + 1}" for i in range(len(self.hidden)))

    def feature_layer(self, name: str) -> FeatureLayer:
        """Hidden layer ``name`` (``fcK``, softplus), evaluated without dropout: its incoming weights and bias,
        ``pre(x)`` (convolutions, then the fully connected layers up to its pre-activations) and ``head(a)``
        (softplus, the remaining layers, the softplus output).

        Raises:
            ConfigError: an unknown name (the message lists the names there are).
        """
        if name not in self.feature_layers:
            raise unknown_layer(name, self.feature_layers, "cnn")
        k = self.feature_layers.index(name)
        params = lambda: self.views(self.flat.detach())  # noqa: E731  (the weights as they are when called)

        def pre(x: torch.Tensor) -> torch.Tensor:
            p = params()
            h = self._convs(p, x)
            for i in range(k):
                h = F.softplus(self._fc_pre(p, i, h))
            return self._fc_pre(p, k, h)

        def head(a: torch.Tensor) -> torch.Tensor:
            p, h = params(), F.softplus(a)
            for i in range(k + 1, len(self.hidden) + 1):
                h = F.softplus(self._fc_pre(p, i, h))
            return h.squeeze(-1)

        w, b = self.views(self.flat.detach())[6 + 2 * k: 8 + 2 * k]
        return FeatureLayer(name, w, b, pre, head, F.softplus)

    def flops_forward(self, n: int) -> float:
        """Multiply-add FLOPs of one forward pass over n images, per replica."""
        c, h, w = self.input_shape
        f, s = self.filters, 2 - 2 * self.padding
        a1 = (h - s) * (w - s)
        a2 = (h - 2 * s) * (w - 2 * s)
        a3 = ((h - 2 * s) // 2 - s) * ((w - 2 * s) // 2 - s)
        conv = a1 * f * c * 9 + a2 * 2 * f * f * 9 + a3 * 4 * f * 2 * f * 9
        widths = [self.flat_width, *self.hidden, 1]
        fc = sum(widths[i] * widths[i + 1] for i in range(len(widths) - 1))
        return 2.0 * n * (conv + fc)


class LabelDropoutCNN(CNNStack):
    """A CNN teacher that keeps its dropout on in every forward pass: when it labels synthetic images and when
    direct optimization differentiates through it (``teacher.label_dropout: true``, the teacher study's reading
    of a teacher called in training mode). Masks come from ``generators`` (one per replica, its own stream)."""

    def forward(self, x, flat=None, keep=False, train=True):
        return super().forward(x, flat, keep=keep, train=True)

    def state_dict(self) -> dict:
        """The mask streams' states: a mid-run checkpoint carries them, so a resumed cell draws the same masks."""
        return {"dropout_masks": generator_states(self.generators)}

    def load_state_dict(self, state: dict) -> None:
        set_generator_states(self.generators, state["dropout_masks"])


def cnn_module(params: dict[str, torch.Tensor], filters: int, input_shape=(1, 28, 28), hidden=(500, 100, 20),
               dropout=(0.5, 0.25, 0.0), padding: int = 0) -> nn.Module:
    """The same network as one plain ``nn.Module`` holding copies of ``params`` (the reference for tests)."""
    f, c, padding = int(filters), int(input_shape[0]), padding_value(padding)
    probe = CNNStack(f, 1, input_shape, hidden, dropout, padding)
    layers = [nn.Conv2d(c, f, 3, padding=padding), nn.ReLU(), nn.Conv2d(f, 2 * f, 3, padding=padding), nn.Softplus(),
              nn.MaxPool2d(2), nn.Conv2d(2 * f, 4 * f, 3, padding=padding), nn.Softplus(), nn.MaxPool2d(2),
              nn.Flatten()]
    widths = [probe.flat_width, *hidden, 1]
    for i in range(len(widths) - 1):
        layers += [nn.Linear(widths[i], widths[i + 1]), nn.Softplus()]
        if i < len(dropout) and dropout[i] > 0:
            layers.append(nn.Dropout(dropout[i]))
    net = nn.Sequential(*layers)
    convs = [m for m in net if isinstance(m, nn.Conv2d)]
    fcs = [m for m in net if isinstance(m, nn.Linear)]
    with torch.no_grad():
        for i, m in enumerate(convs):
            m.weight.copy_(params[f"conv{i + 1}.weight"])
            m.bias.copy_(params[f"conv{i + 1}.bias"])
        for i, m in enumerate(fcs):
            m.weight.copy_(params[f"fc{i + 1}.weight"])
            m.bias.copy_(params[f"fc{i + 1}.bias"])
    return net


#: The kind of dataset input (``Dataset.inputs``) this architecture takes.
INPUTS = "image"


def build_stack(input_shape, generators: list[torch.Generator], device="cpu", filters: int = 5,
                hidden=(500, 100, 20), dropout=(0.5, 0.25, 0.0), padding: int = 0) -> CNNStack:
    """A fresh student stack (see :func:`dfkd.models.build_stack`)."""
    if len(tuple(input_shape)) != 3:
        raise ConfigError(f"the CNN needs image inputs (C, H, W), got input shape {tuple(input_shape)}: "
                          f"use student=cnn5 only with an image dataset such as dataset=mnist")
    return CNNStack.init(filters, generators, device, input_shape=tuple(input_shape), hidden=tuple(hidden),
                         dropout=tuple(dropout), padding=padding)


class ConvGeneratorStack(_FlatStack):
    """R image generators ``z -> Linear(latent, 2c*h/4*w/4) ReLU -> ConvT(2c, c) ReLU -> ConvT(c, C) sigmoid``.

    Both transposed convolutions are 4x4 with stride 2 and padding 1, each doubling the side.
    """

    def __init__(self, latent: int, channels: int, input_shape, replicas: int, device="cpu", flat=None):
        c_out, h, w = (int(s) for s in input_shape)
        if h % 4 or w % 4:
            raise ConfigError(f"the conv generator needs image sides divisible by 4, got {input_shape}")
        self.latent, self.channels, self.input_shape = int(latent), int(channels), (c_out, h, w)
        c = self.channels
        self.h0, self.w0 = h // 4, w // 4
        width = 2 * c * self.h0 * self.w0
        layers = [
            ("fc.weight", (width, self.latent), self.latent), ("fc.bias", (width,), self.latent),
            # ConvTranspose2d weight layout (C_in, C_out, k, k); PyTorch's fan_in for it is C_out * k * k.
            ("up1.weight", (2 * c, c, 4, 4), c * 16), ("up1.bias", (c,), c * 16),
            ("up2.weight", (c, c_out, 4, 4), c_out * 16), ("up2.bias", (c_out,), c_out * 16),
        ]
        super().__init__(layers, replicas, device, flat)

    @classmethod
    def init(cls, latent: int, channels: int, input_shape, generators, device="cpu") -> "ConvGeneratorStack":
        """Fresh generators, replica r initialised from ``generators[r]``."""
        stack = cls(latent, channels, input_shape, len(generators), device)
        stack.load([stack.init_params(g) for g in generators])
        return stack

    def _run(self, params, z, train):
        r, n = z.shape[:2]
        fw, fb, w1, b1, w2, b2 = params
        h = F.relu(torch.baddbmm(fb.unsqueeze(1), z, fw.transpose(1, 2)))  # (R, n, 2c*h0*w0)
        h = _grouped(h.view(r, n, 2 * self.channels, self.h0, self.w0))
        h = F.relu(F.conv_transpose2d(h, w1.reshape((-1,) + tuple(w1.shape[2:])), b1.reshape(-1), stride=2,
                                      padding=1, groups=r))
        h = torch.sigmoid(F.conv_transpose2d(h, w2.reshape((-1,) + tuple(w2.shape[2:])), b2.reshape(-1), stride=2,
                                             padding=1, groups=r))
        c_out, hh, ww = self.input_shape
        return h.view(n, r, c_out, hh, ww).transpose(0, 1)  # (R, n, C, H, W)
