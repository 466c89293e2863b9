"""Teacher sources: where a cell's teachers come from. Each yaml under ``conf/teacher/`` names one in ``_target_``.

- :class:`TrainedMLP`: the paper's tabular teacher, one per seed (its own split), trained here and cached;
  with ``black_box: true`` (``conf/teacher/mlp500_box.yaml``) the same cached teachers handed to the cell
  behind ``predict`` alone (:class:`~dfkd.models.blackbox.PredictOnlyTeacher`: no gradients, queries counted).
- :class:`TrainedCNN`: the MNIST teacher, one network (seed ``seed``) shared by every run, trained here and cached.
- :class:`BlackBox`: any regressor with ``fit``/``predict`` (eSol: scikit-learn's SVR), fitted per distinct
  split and known to the methods only through ``predict``.

The cell asks a source through :class:`TeacherSource` and never looks at its family; a new kind of
teacher is one class and one yaml.
"""

from __future__ import annotations

from dataclasses import MISSING, asdict
from pathlib import Path
from typing import Protocol, runtime_checkable

from dfkd.core.progress import progress_bar, teacher_progress
from dfkd.core.validate import typed_fields
from dfkd.engine import cache
from dfkd.errors import ConfigError, TeacherError
from dfkd.records import config_hash, git_commit, now_utc

# Bump when a change to the protocol's code changes numbers, so stale records and teachers are redone.
PROTOCOL_VERSION = 1


@runtime_checkable
class TeacherSource(Protocol):
    """What the cell needs of a teacher source.

    Attributes:
        name: The yaml's name (records, logs).
        inputs: The kinds of dataset input (``Dataset.inputs``) it takes.
        differentiable: Whether gradient methods (direct, generator) can use its teachers.
    """

    name: str
    inputs: tuple
    differentiable: bool

    def key(self, dataset, split) -> str:
        """Hash of everything that determines the teacher besides its seed (``split``: ``dataset.teacher_split``)."""

    def get(self, dataset, seeds: list[int], splits, device, key: str, cache_dir: Path,
            train_if_missing: bool = True, progress: bool = True, log=print):
        """``(stack, infos)`` for ``seeds``: the teachers as one stack, and per replica a dict with at least
        ``val_rmse``, ``test_rmse`` and ``epochs``."""

    # Optional (not part of the protocol, so sources without it still answer it): ``cell_extra() -> dict``,
    # entries the cell's config hash takes besides the key (:func:`dfkd.cell.cell_hash`); absent = none.


def _late_dropped(config) -> dict:
    """A config dataclass as a dict for the key, without the fields added after protocol 1 (``LATE_FIELDS``) that
    sit at their default, so that the teachers cached (and the records made) before those fields existed keep
    their keys (the same rule as :func:`dfkd.cell._hashed_fields` for students)."""
    out = asdict(config)
    fields = type(config).__dataclass_fields__
    for name in getattr(config, "LATE_FIELDS", ()):
        f = fields[name]
        default = f.default if f.default_factory is MISSING else f.default_factory()
        if name in out and out[name] == default:
            del out[name]
    return out


def _key(dataset, split, teacher: dict) -> str:
    return config_hash({"protocol": PROTOCOL_VERSION, "dataset": dataset.name, "data": dataset.fingerprint(),
                        "split": split, "teacher": teacher})


def threads_note() -> str:
    """What a teacher trained now needs said: at more than one intra-op thread it is not bit-equal to the
    1-thread teacher under the same cache key (measured on MNIST: test RMSE 0.483 against 0.394)."""
    import torch

    n = torch.get_num_threads()
    return "" if n == 1 else (f" at {n} threads: not bit-equal to a 1-thread teacher under the same key "
                              f"(the committed runs' teachers were trained at threads=1)")


class TrainedMLP:
    """Linear(d, hidden) -> tanh -> Linear(hidden, 1) per seed, trained as SPEC section 1 says
    (:func:`dfkd.engine.teacher.train_teachers`), all missing seeds in one stack, then cached.

    ``black_box=True``: the same teachers (the same key, so the same cache files) handed out behind
    ``predict`` alone (:class:`~dfkd.models.blackbox.PredictOnlyTeacher`), for methods that need no
    gradients (``method=de_tabular``); gradient methods refuse it, and its rows asked are counted.
    """

    inputs = ("table",)
    differentiable = True
    train_hint = "run `make teachers`"

    def __init__(self, name: str = "mlp500", black_box: bool = False, **config):
        from dfkd.engine.teacher import TeacherConfig

        if not isinstance(black_box, bool):
            raise ConfigError(f"teacher.black_box must be true or false, got {black_box!r}")
        self.name = name
        self.black_box = black_box
        self.differentiable = not black_box
        self.config = TeacherConfig(**typed_fields(TeacherConfig, config, "teacher."))

    def key(self, dataset, split) -> str:
        return _key(dataset, split, asdict(self.config))  # black_box is not in it: the teachers are the same

    def cell_extra(self) -> dict:
        """What the teacher adds to a cell's config hash besides its key: the predict-only route, so its
        records never pass for (or skip) those of the plain teacher; nothing otherwise, so hashes stay."""
        return {"teacher_access": "predict"} if self.black_box else {}

    def get(self, dataset, seeds, splits, device, key, cache_dir, train_if_missing=True, progress=True, log=print):
        from dfkd.engine.teacher import train_teachers
        from dfkd.models.mlp import MLPStack

        name, cache_dir = dataset.name, Path(cache_dir)
        d_in = int(splits[0].X_train.shape[1])

        def expect(seed):
            return {"dataset": name, "seed": seed, "d_in": d_in, "hidden": self.config.hidden, "key": key}

        paths = {seed: cache.teacher_path(cache_dir, name, seed, key) for seed in seeds}
        with cache.file_lock(cache_dir / name / f".lock-{key}"):
            todo = [s for s in seeds if not paths[s].exists()]
            if todo:
                if not train_if_missing:
                    raise TeacherError(f"no cached teacher for {name} seed(s) {todo} under {cache_dir}: "
                                       f"{self.train_hint} (or drop train_teachers_if_missing=false)")
                idx = [seeds.index(s) for s in todo]
                log(f"[{name}] training {len(todo)} teacher(s) (seeds {todo[0]}..{todo[-1]}) in one stack"
                    f"{threads_note()}")
                bar = progress_bar(progress, self.config.max_epochs, f"{name} teachers")
                stack, infos = train_teachers([splits[i] for i in idx], todo, self.config, device,
                                              progress=teacher_progress(bar))
                if bar is not None:
                    bar.close()
                for r, seed in enumerate(todo):
                    meta = dict(expect(seed), **infos[r], created=now_utc(), git_commit=git_commit())
                    cache.save_teacher(paths[seed], stack.replica_params(r), meta)
        loaded = [cache.load_teacher(paths[s], expect(s), hint=self.train_hint) for s in seeds]
        stack = MLPStack.from_params([p for p, _ in loaded], device=device)
        if self.black_box:
            from dfkd.models.blackbox import PredictOnlyTeacher

            return PredictOnlyTeacher(stack), [m for _, m in loaded]
        return stack, [m for _, m in loaded]


class TrainedCNN:
    """The one image teacher (seed ``seed``) every run shares (the paper reports a single teacher MAE,
    0.157, with no spread), trained by :func:`dfkd.engine.supervised.train_supervised`, cached, and
    replicated over the students' stack.

    ``label_dropout=True`` hands the same cached network (the same key) to the cell with its dropout on in
    every pass (:class:`~dfkd.models.cnn.LabelDropoutCNN`): labels of synthetic images and direct
    optimization's gradients then see dropout, each student replica with its own mask stream. It enters the
    cell's config hash (:meth:`cell_extra`) only when on, so existing hashes stay. Its mask streams are part
    of a mid-run checkpoint (the teacher's ``state_dict``), so a resumed stack draws the masks an uninterrupted
    run would.
    """

    inputs = ("image",)
    differentiable = True

    def __init__(self, name: str = "cnn10", arch: str = "cnn", params: dict | None = None,
                 label_dropout: bool = False, **config):
        from dfkd.engine.supervised import CNNTeacherConfig
        from dfkd.models.cnn import padding_value

        if not isinstance(label_dropout, bool):
            raise ConfigError(f"teacher.label_dropout must be true or false, got {label_dropout!r}")
        self.name = name
        self.label_dropout = label_dropout
        arch_params = dict(params or {"filters": 10})
        if "padding" in arch_params:  # "valid"/"same" -> 0/1, so a yaml saying valid keeps the key of padding: 0
            arch_params["padding"] = padding_value(arch_params["padding"])
        fields = dict(config, arch=str(arch), arch_params=arch_params)
        self.config = CNNTeacherConfig(**typed_fields(CNNTeacherConfig, fields, "teacher."))

    @property
    def train_hint(self) -> str:
        return f"run `python -m dfkd.teachers dataset=<the dataset> teacher={self.name} student=cnn5`"

    def key(self, dataset, split) -> str:
        return _key(dataset, split, _late_dropped(self.config))

    def cell_extra(self) -> dict:
        """Dropout at labelling changes the students (not the teacher): in the cell's hash when on, else nothing."""
        return {"teacher_label_dropout": True} if self.label_dropout else {}

    def get(self, dataset, seeds, splits, device, key, cache_dir, train_if_missing=True, progress=True, log=print):
        from dfkd.engine.supervised import train_supervised
        from dfkd.models.cnn import CNNStack

        cfg, name, cache_dir = self.config, dataset.name, Path(cache_dir)
        shape = tuple(splits[0].X_train.shape[1:])
        expect = {"dataset": name, "seed": cfg.seed, "arch": cfg.arch, "key": key}
        path = cache.teacher_path(cache_dir, name, cfg.seed, key)
        hint = self.train_hint.replace("<the dataset>", name)
        with cache.file_lock(cache_dir / name / f".lock-{key}"):
            if not path.exists():
                if not train_if_missing:
                    raise TeacherError(f"no cached {name} teacher under {cache_dir}: {hint} "
                                       f"(or drop train_teachers_if_missing=false)")
                n = splits[0].X_train.shape[0]
                log(f"[{name}] training the {cfg.arch} teacher (seed {cfg.seed}) on {n} images for {cfg.epochs} epochs"
                    f"{threads_note()}")
                bar = progress_bar(progress, cfg.epochs, f"{name} teacher")

                def report(epoch, best):
                    if bar is not None:
                        bar.update(1)
                        bar.set_postfix_str(f"best val RMSE {best[0]:.4f}", refresh=False)
                stack, infos = train_supervised(splits[0], [cfg.seed], cfg, shape, device, progress=report)
                if bar is not None:
                    bar.close()
                log(f"[{name}] teacher: test MAE {infos[0]['test_mae']:.4f}, RMSE {infos[0]['test_rmse']:.4f} "
                    f"(paper 0.157 / 0.165), best epoch {infos[0]['best_epoch'] + 1} of {cfg.epochs}")
                meta = dict(expect, **infos[0], created=now_utc(), git_commit=git_commit())
                cache.save_teacher(path, stack.replica_params(0), meta)
        params, meta = cache.load_teacher(path, expect, mlp_shape=False, hint=hint)
        if self.label_dropout:
            from dfkd.core import rng
            from dfkd.models.cnn import LabelDropoutCNN

            stack = LabelDropoutCNN.from_params([params] * len(seeds), device=device, input_shape=shape,
                                                generators=rng.generators(seeds, "teacher_label_dropout"),
                                                **cfg.arch_params)
            return stack, [meta] * len(seeds)
        stack = CNNStack.from_params([params] * len(seeds), device=device, input_shape=shape, **cfg.arch_params)
        return stack, [meta] * len(seeds)


class BlackBox:
    """A teacher known only through ``predict`` (the paper's eSol SVR): ``regressor`` is the class's import
    path, ``params`` its keyword arguments. Fitting is fast and deterministic, so nothing is cached."""

    inputs = ("table",)
    differentiable = False

    def __init__(self, name: str = "svr", regressor: str = "sklearn.svm.SVR", params: dict | None = None):
        from dfkd.models.blackbox import BlackBoxConfig

        self.name = name
        self.config = BlackBoxConfig(target=str(regressor), params=dict(params or {}))

    def key(self, dataset, split) -> str:
        return _key(dataset, split, dict(asdict(self.config), kind="blackbox"))

    def get(self, dataset, seeds, splits, device, key, cache_dir, train_if_missing=True, progress=True, log=print):
        from dfkd.models.blackbox import fit_blackbox_teachers

        teacher, infos = fit_blackbox_teachers(splits, self.config.target, self.config.params, device)
        rmse = sorted({round(i["test_rmse"], 6) for i in infos})
        log(f"[{dataset.name}] black-box teacher {self.config.target} fitted: test RMSE {', '.join(map(str, rmse))}")
        return teacher, infos
