"""Black-box teachers: any regressor with ``predict(X)``, queried row by row and counted.

The paper's protein case study (section 3.6, Table 6) distils a support vector
regressor: "the teacher model used is a support vector machine, which
represents the black-box teacher model that contains no gradient information
and only output prediction value is available". :class:`BlackBoxTeacher`
wraps one such object per replica (scikit-learn ``SVR()``, a random forest, a
remote service behind a ``predict`` method...), answers the teacher protocol of
``docs/engine-contract.md`` with ``differentiable = False``, and counts every
row it is asked about, per replica, so runs can report what distillation cost
in teacher queries.

:class:`PredictOnlyTeacher` puts a network stack (the trained tabular MLP teachers,
``conf/teacher/mlp500_box.yaml``) behind the same protocol: only ``predict``, no
gradients, every row counted.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from dfkd.errors import ConfigError
from dfkd.imports import instantiate


@dataclass(frozen=True)
class BlackBoxConfig:
    """A teacher known only through ``predict``: the regressor class to fit on the training split, and its
    keyword arguments (``conf/teacher/svr.yaml``: ``sklearn.svm.SVR`` with scikit-learn's defaults)."""

    target: str = "sklearn.svm.SVR"
    params: dict = field(default_factory=dict)


class _QueryCounter:
    """Per-replica counts of the rows asked of a teacher, kept in checkpoints (``state_dict``).

    Attributes:
        queries: rows asked of each replica so far (a list of ints).
    """

    differentiable = False
    replicas: int
    queries: list

    @property
    def total_queries(self) -> int:
        """Rows asked of all replicas together."""
        return sum(self.queries)

    def reset_queries(self) -> None:
        """Start counting from zero."""
        self.queries = [0] * self.replicas

    def state_dict(self) -> dict:
        """The query counts (the models themselves never change): what a checkpoint keeps of the teacher."""
        return {"queries": list(self.queries)}

    def load_state_dict(self, state: dict) -> None:
        """Continue counting from a checkpoint's counts."""
        queries = [int(q) for q in state["queries"]]
        if len(queries) != self.replicas:
            raise ValueError(f"expected query counts of {self.replicas} replicas, got {len(queries)}")
        self.queries = queries


class BlackBoxTeacher(_QueryCounter):
    """R teachers known only through ``predict``: replica r answers with ``models[r]``.

    Replicas may share one object (the protein split is the same for every
    run, so its SVR is too); a batch for all replicas then goes to that object
    in one call. Queries are still counted per replica.

    Attributes:
        queries: rows asked of each replica so far (a list of ints).
    """

    def __init__(self, models: list, d_in: int, device="cpu"):
        if not models:
            raise ConfigError("a black-box teacher needs at least one model")
        for m in models:
            if not callable(getattr(m, "predict", None)):
                raise ConfigError(f"teacher object {type(m).__name__} has no predict(X) method: "
                                  f"a black-box teacher must answer predict")
        self.models = list(models)
        self.replicas = len(models)
        self.d_in = int(d_in)
        self.input_shape = (self.d_in,)
        self.device = torch.device(device)
        self.queries = [0] * self.replicas

    def _ask(self, model, X: np.ndarray) -> np.ndarray:
        y = np.asarray(model.predict(X), dtype=np.float64).reshape(-1)
        if y.shape[0] != X.shape[0]:
            raise ConfigError(f"teacher {type(model).__name__}.predict returned {y.shape[0]} values for "
                              f"{X.shape[0]} rows: it must return one number per row")
        return y

    def predict_replica(self, r: int, X: np.ndarray) -> np.ndarray:
        """Replica r's predictions for rows ``X`` ``(n, d)`` (numpy in, float64 numpy out)."""
        X = np.asarray(X, dtype=np.float64).reshape(-1, self.d_in)
        self.queries[r] += X.shape[0]
        return self._ask(self.models[r], X)

    def predict(self, x: torch.Tensor, flat=None) -> torch.Tensor:
        """Predictions ``(R, n)`` (float32 on the stack's device) for inputs ``(R, n, d)``."""
        if flat is not None:
            raise ConfigError("a black-box teacher has no parameters to substitute (flat must be None)")
        R, n = x.shape[0], x.shape[1]
        if R != self.replicas:
            raise ValueError(f"input has {R} replicas, the teacher {self.replicas}")
        X = x.detach().reshape(R, n, self.d_in).to("cpu", torch.float64).numpy()
        out = np.empty((R, n))
        if all(m is self.models[0] for m in self.models):
            out[:] = self._ask(self.models[0], X.reshape(R * n, self.d_in)).reshape(R, n)
        else:
            for r in range(R):
                out[r] = self._ask(self.models[r], X[r])
        for r in range(R):
            self.queries[r] += n
        return torch.from_numpy(out).to(self.device, torch.float32)

    def forward(self, x: torch.Tensor, flat=None, keep: bool = False):
        """Outputs ``(R, n, 1)``. Refuses ``keep``: there are no gradients to keep."""
        if keep:
            raise ConfigError("the teacher is a black box (predict only, no gradients): gradient methods cannot "
                              "use it; choose method=de (differential evolution) or method=random")
        return self.predict(x, flat).unsqueeze(-1)

    def backward(self, *args, **kwargs):
        """Not available: see :meth:`forward`."""
        raise ConfigError("the teacher is a black box (predict only, no gradients): choose method=de or "
                          "method=random")


class PredictOnlyTeacher(_QueryCounter):
    """A stack of network teachers used only through ``predict``: the black-box route for teachers we could
    differentiate (``conf/teacher/mlp500_box.yaml``: the cached tabular MLPs, unchanged).

    It answers ``predict(x)`` for all replicas and ``predict_replica(r, X)`` for one, counting every row
    per replica, and has no ``forward``/``backward``: a gradient method bound to it fails in ``bind``.
    The numbers are the stack's own (``predict_replica`` evaluates replica r through ``flat[r:r+1]``, as
    :func:`dfkd.methods.de.replica_predict` does for a plain stack).

    Attributes:
        queries: rows asked of each replica so far (a list of ints).
    """

    def __init__(self, stack):
        self._stack = stack
        self.replicas = int(stack.replicas)
        self.input_shape = tuple(int(s) for s in stack.input_shape)
        self.d_in = int(np.prod(self.input_shape))
        self.device = torch.device(stack.device)
        self.queries = [0] * self.replicas

    def predict(self, x: torch.Tensor, flat=None) -> torch.Tensor:
        """Predictions ``(R, n)`` for inputs ``(R, n, *input_shape)``."""
        if flat is not None:
            raise ConfigError("a predict-only teacher has no parameters to substitute (flat must be None)")
        if x.shape[0] != self.replicas:
            raise ValueError(f"input has {x.shape[0]} replicas, the teacher {self.replicas}")
        out = self._stack.predict(x.detach())
        for r in range(self.replicas):
            self.queries[r] += int(x.shape[1])
        return out

    def predict_replica(self, r: int, X: np.ndarray) -> np.ndarray:
        """Replica r's predictions for rows ``X`` ``(n, d)`` (numpy in, float64 numpy out)."""
        x = torch.as_tensor(np.asarray(X), dtype=torch.float32, device=self.device).reshape(1, -1, *self.input_shape)
        self.queries[r] += int(x.shape[1])
        return self._stack.predict(x, self._stack.flat[r:r + 1])[0].to("cpu", torch.float64).numpy()


def build_regressor(target: str, params: dict | None = None):
    """Instantiate a regressor class named by its import path, e.g. ``sklearn.svm.SVR``.

    Raises:
        ConfigError: if the class cannot be imported or does not take ``params``.
    """
    return instantiate(target, params, "teacher class", "set teacher.regressor to e.g. sklearn.svm.SVR")


def _split_key(split) -> str:
    h = hashlib.sha256()
    for a in (split.X_train, split.y_train):
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def _rmse(model, X, y) -> float:
    pred = np.asarray(model.predict(np.asarray(X, dtype=np.float64)), dtype=np.float64).reshape(-1)
    return float(np.sqrt(np.mean((pred - np.asarray(y, dtype=np.float64)) ** 2)))


def fit_blackbox_teachers(splits, target: str = "sklearn.svm.SVR", params: dict | None = None, device="cpu"):
    """Fit one regressor per split on its training rows (float64), sharing fits across equal splits.

    Returns:
        ``(teacher, infos)``: a :class:`BlackBoxTeacher` and per replica a dict with
        ``val_rmse``, ``test_rmse``, ``epochs`` (0: not an iterative fit) and ``wall_time_s``.
        The evaluation queries are not counted: only distillation's are.
    """
    fitted, models, infos = {}, [], []
    for split in splits:
        key = _split_key(split)
        if key not in fitted:
            t0 = time.perf_counter()
            model = build_regressor(target, params)
            model.fit(np.asarray(split.X_train, dtype=np.float64), np.asarray(split.y_train, dtype=np.float64))
            fitted[key] = (model, {"val_rmse": _rmse(model, split.X_val, split.y_val),
                                   "test_rmse": _rmse(model, split.X_test, split.y_test),
                                   "epochs": 0, "wall_time_s": time.perf_counter() - t0})
        models.append(fitted[key][0])
        infos.append(dict(fitted[key][1]))
    d = np.asarray(splits[0].X_train).shape[1]
    return BlackBoxTeacher(models, d, device), infos
