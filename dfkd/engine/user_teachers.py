"""A user's own trained regressor as a teacher of the engine (issue 16: ``dfkd.DistilledRegressor``, ``dfkd.own``).

The engine works on standardised inputs z = (x - mu) / sd and standardised outputs; a user's teacher takes
raw features and returns raw predictions. The adapters here put the teacher behind the engine's teacher
protocol (``docs/engine-contract.md``) in those units, one replica (R = 1):

- :class:`TorchTeacher`: an ``nn.Module`` or a TorchScript module, white box. ``forward(x, keep=True)`` and
  ``backward(cache, g_out, params=False, inputs=True)`` are autograd's, so the gradient methods (direct,
  generator, TSM's ABM and GM) use it as they use :class:`~dfkd.models.mlp.MLPStack`.
- :func:`black_box_teacher`: a scikit-learn regressor, any object with ``predict(X)`` or a plain callable,
  behind :class:`~dfkd.models.blackbox.BlackBoxTeacher` (``differentiable = False``), so only differential
  evolution and random sampling use it.

Both count every row asked (``queries``, kept in checkpoints). :class:`UniformSampler` is the base distribution
of a box given by the user (``input_bounds``). :func:`load_teacher_file` reads a ``.pt`` (TorchScript, or a
pickled module) or ``.joblib``/``.pkl`` file, :func:`teacher_kind` tells the kinds apart, and
:func:`fingerprint` identifies a teacher by its answers on fixed rows.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch

from dfkd.core.state import one_line
from dfkd.data.sampler import Sampler
from dfkd.errors import ConfigError, TeacherError
from dfkd.models.blackbox import BlackBoxTeacher

#: Files read as torch modules; as pickles (joblib).
TORCH_SUFFIXES = (".pt", ".pth", ".ts", ".jit")
PICKLE_SUFFIXES = (".joblib", ".pkl", ".pickle")


def teacher_kind(teacher) -> str:
    """``torch`` (an ``nn.Module`` / TorchScript module: white box), ``predict`` (an object with ``predict``:
    black box) or ``callable`` (a function of rows: black box).

    Raises:
        ConfigError: a teacher that is none of these (one line naming what it needs).
    """
    if isinstance(teacher, (torch.nn.Module, torch.jit.ScriptModule)):
        return "torch"
    if callable(getattr(teacher, "predict", None)):
        return "predict"
    if callable(teacher):
        return "callable"
    raise ConfigError(f"teacher {type(teacher).__name__} has neither predict(X) nor forward(x) and is not callable: "
                      f"give a torch module, a TorchScript file, a fitted scikit-learn regressor or a function of rows")


def load_teacher_file(path) -> object:
    """The teacher stored in ``path``: ``.pt``/``.pth``/``.ts``/``.jit`` (TorchScript first, then a whole pickled
    ``nn.Module``) or ``.joblib``/``.pkl``/``.pickle`` (joblib). Pickled files run code when read: load only
    files you trust.

    Raises:
        TeacherError: a missing file, an unknown suffix, or a file that cannot be read (one line).
    """
    path = Path(path)
    if not path.is_file():
        raise TeacherError(f"teacher file {path} does not exist: give the path of a .pt or .joblib file")
    suffix = path.suffix.lower()
    if suffix in TORCH_SUFFIXES:
        try:
            return torch.jit.load(str(path), map_location="cpu")
        except Exception as first:  # noqa: BLE001 - not TorchScript: maybe a pickled module
            try:
                obj = torch.load(path, map_location="cpu", weights_only=False)
            except Exception:  # noqa: BLE001
                raise TeacherError(f"teacher file {path} cannot be loaded as TorchScript or as a torch module "
                                   f"({one_line(first)}): save it with torch.jit.save or torch.save(module)") from None
            if not isinstance(obj, torch.nn.Module):
                raise TeacherError(f"teacher file {path} holds a {type(obj).__name__}, not a module (a state_dict "
                                   f"needs its class): save the module itself or a TorchScript of it") from None
            return obj
    if suffix in PICKLE_SUFFIXES:
        import joblib

        try:
            return joblib.load(path)
        except Exception as exc:  # noqa: BLE001
            raise TeacherError(f"teacher file {path} cannot be loaded with joblib ({one_line(exc)}): save the "
                               f"fitted regressor with joblib.dump") from None
    raise TeacherError(f"teacher file {path} has suffix {suffix or '(none)'}: use {', '.join(TORCH_SUFFIXES)} "
                       f"(torch) or {', '.join(PICKLE_SUFFIXES)} (scikit-learn, joblib)")


class Scaling:
    """Raw <-> standardised units: ``z = (x - x_mean) / x_std``, ``t_z = (t - y_mean) / y_std`` (float64)."""

    def __init__(self, x_mean, x_std, y_mean: float = 0.0, y_std: float = 1.0):
        self.x_mean = np.asarray(x_mean, dtype=np.float64).reshape(-1)
        self.x_std = np.asarray(x_std, dtype=np.float64).reshape(-1)
        self.y_mean, self.y_std = float(y_mean), float(y_std)

    def raw(self, z: np.ndarray) -> np.ndarray:
        return np.asarray(z, dtype=np.float64) * self.x_std + self.x_mean

    def standard(self, x: np.ndarray) -> np.ndarray:
        return (np.asarray(x, dtype=np.float64) - self.x_mean) / self.x_std


def raw_predictions(teacher, X: np.ndarray) -> np.ndarray:
    """The teacher's raw answers for raw rows ``X (n, d)``, float64 ``(n,)`` (not counted: for fidelity, probes).

    Raises:
        ConfigError: answers that are not one finite number per row.
    """
    X = np.asarray(X, dtype=np.float64)
    kind = teacher_kind(teacher)
    if kind == "torch":
        dtype, device = _module_dtype_device(teacher)
        with torch.no_grad():
            out = teacher(torch.as_tensor(X, dtype=dtype, device=device))
        y = out.detach().to("cpu", torch.float64).numpy()
    else:
        y = np.asarray(teacher.predict(X) if kind == "predict" else teacher(X), dtype=np.float64)
    return _one_per_row(y, X.shape[0], teacher)


def _one_per_row(y: np.ndarray, n: int, teacher) -> np.ndarray:
    y = np.asarray(y, dtype=np.float64)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.shape != (n,):
        raise ConfigError(f"teacher {type(teacher).__name__} answered shape {tuple(y.shape)} for {n} rows: it must "
                          f"return one number per row (shape ({n},) or ({n}, 1))")
    return y


def _module_dtype_device(module) -> tuple:
    for p in module.parameters():
        if p.is_floating_point():
            return p.dtype, p.device
    return torch.float32, torch.device("cpu")


class TorchTeacher:
    """A torch regressor of raw features behind the engine's model-stack protocol, in standardised units, R = 1.

    ``T_z(z) = (f(z * x_std + x_mean) - y_mean) / y_std`` with f the user's module (its own dtype and device;
    the module is put in eval mode and never changed). Gradients are autograd's.

    Attributes:
        queries: rows asked so far, per replica (one).
    """

    differentiable = True
    replicas = 1

    def __init__(self, module, scaling: Scaling, device="cpu"):
        self.module = module.eval()
        self.scaling = scaling
        self.d_in = int(scaling.x_mean.shape[0])
        self.input_shape = (self.d_in,)
        self.device = torch.device(device)
        self.dtype, self.module_device = _module_dtype_device(module)
        self._mean = torch.as_tensor(scaling.x_mean, dtype=self.dtype, device=self.module_device)
        self._std = torch.as_tensor(scaling.x_std, dtype=self.dtype, device=self.module_device)
        self.queries = [0]

    @property
    def total_queries(self) -> int:
        return sum(self.queries)

    def state_dict(self) -> dict:
        return {"queries": list(self.queries)}

    def load_state_dict(self, state: dict) -> None:
        queries = [int(q) for q in state["queries"]]
        if len(queries) != 1:
            raise ValueError(f"expected the query count of 1 replica, got {len(queries)}")
        self.queries = queries

    def _out(self, z: torch.Tensor) -> torch.Tensor:
        """``z (R, n, d)`` (any dtype and device) -> ``(R, n)`` in the engine's dtype and device."""
        R, n = z.shape[0], z.shape[1]
        x = z.reshape(R * n, self.d_in).to(self.module_device, self.dtype) * self._std + self._mean
        y = self.module(x)
        if y.dim() == 2 and y.shape[1] == 1:
            y = y[:, 0]
        if tuple(y.shape) != (R * n,):
            raise ConfigError(f"teacher module answered shape {tuple(y.shape)} for {R * n} rows: it must return one "
                              f"number per row")
        self.queries[0] += n
        return ((y - self.scaling.y_mean) / self.scaling.y_std).reshape(R, n)

    def predict(self, x: torch.Tensor, flat=None) -> torch.Tensor:
        if flat is not None:
            raise ConfigError("a user's torch teacher has no parameters to substitute (flat must be None)")
        with torch.no_grad():
            return self._out(x).to(self.device, torch.float32)

    def forward(self, x: torch.Tensor, flat=None, keep: bool = False, train: bool = False):
        if not keep:
            return self.predict(x, flat).unsqueeze(-1)
        leaf = x.detach().to(self.module_device, self.dtype).requires_grad_(True)
        with torch.enable_grad():
            out = self._out(leaf)
        return out.detach().to(self.device, torch.float32).unsqueeze(-1), (leaf, out)

    def backward(self, cache, g_out: torch.Tensor, params: bool = False, inputs: bool = True):
        """``(None, d sum(g_out * T) / d x)``: the teacher's weights never get gradients."""
        if params:
            raise ConfigError("a user's torch teacher is frozen: no parameter gradients (params must be False)")
        leaf, out = cache
        g = g_out.reshape(out.shape).to(out.device, out.dtype)
        (gx,) = torch.autograd.grad(out, leaf, g)
        return None, gx.to(self.device, torch.float32) if inputs else None


class _StandardisedPredictor:
    """``predict(Z)`` in standardised units for a raw black box (an object with ``predict`` or a callable)."""

    def __init__(self, teacher, scaling: Scaling):
        self.teacher, self.scaling = teacher, scaling
        self._call = teacher.predict if callable(getattr(teacher, "predict", None)) else teacher

    def predict(self, Z: np.ndarray) -> np.ndarray:
        Z = np.asarray(Z, dtype=np.float64)
        y = _one_per_row(self._call(self.scaling.raw(Z)), Z.shape[0], self.teacher)
        return (y - self.scaling.y_mean) / self.scaling.y_std


def black_box_teacher(teacher, scaling: Scaling, device="cpu") -> BlackBoxTeacher:
    """A raw black box (``predict`` or callable) as a counted, standardised, one-replica :class:`BlackBoxTeacher`."""
    return BlackBoxTeacher([_StandardisedPredictor(teacher, scaling)], int(scaling.x_mean.shape[0]), device)


def engine_teacher(teacher, scaling: Scaling, device="cpu"):
    """The engine's teacher for a user's regressor: :class:`TorchTeacher` or :func:`black_box_teacher`."""
    if teacher_kind(teacher) == "torch":
        return TorchTeacher(teacher, scaling, device)
    return black_box_teacher(teacher, scaling, device)


def teacher_width(teacher) -> int | None:
    """The number of features the teacher declares, when it does: scikit-learn's ``n_features_in_``, a torch
    module's first ``Linear``'s ``in_features``; None when it does not say (a function, a module without one)."""
    n = getattr(teacher, "n_features_in_", None)
    if isinstance(n, (int, np.integer)):
        return int(n)
    if teacher_kind(teacher) == "torch":
        for m in teacher.modules():
            n = getattr(m, "in_features", None)
            if isinstance(n, int):
                return n
    return None


def parameter_count(teacher) -> int | None:
    """Trainable numbers of a torch teacher (None for a black box: not known)."""
    if teacher_kind(teacher) == "torch":
        return int(sum(p.numel() for p in teacher.parameters()))
    return None


def fingerprint(teacher, d: int) -> str:
    """A SHA-256 of the teacher's answers (rounded to 1e-6) on 64 fixed rows of N(0, I)^d: the same function gives
    the same fingerprint whatever it is wrapped in (a module, its TorchScript) and wherever it is loaded from.
    Not counted as queries."""
    X = np.random.default_rng(20230110).standard_normal((64, int(d)))
    y = raw_predictions(teacher, X)
    h = hashlib.sha256(f"dfkd-teacher:{d}:".encode())
    h.update(np.round(y, 6).astype(np.float64).tobytes())
    return h.hexdigest()


class UniformSampler(Sampler):
    """x ~ U(lo, hi) in every coordinate (a user's ``input_bounds``, in standardised units); ``bounds`` = the box."""

    kind = "uniform"

    def __init__(self, lo, hi):
        lo = torch.as_tensor(lo, dtype=torch.float32).reshape(-1)
        hi = torch.as_tensor(hi, dtype=torch.float32).reshape(-1)
        if lo.shape != hi.shape or not bool(torch.all(lo < hi)):
            raise ConfigError("uniform sampler: lo and hi must have one entry per feature and lo < hi")
        super().__init__(lo.shape)
        self.lo, self.hi = lo, hi
        self.bounds = (lo, hi)

    def __call__(self, gens, m, device="cpu"):
        out = torch.empty((len(gens), m) + self.input_shape, device=torch.device(device))
        for r, g in enumerate(gens):
            out[r].uniform_(generator=g)
        lo, hi = self.lo.to(out.device), self.hi.to(out.device)
        return out.mul_(hi - lo).add_(lo)
