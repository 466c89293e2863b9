"""A resolved config dict (what the Hydra entry points compose) checked and built into objects.

:func:`settings_from_dict` builds the dataset, the teacher source, the student and the method
from their yamls' ``_target_`` and checks every global value, so a cell starts only from a
config that makes sense; each mistake is a one-line :class:`~dfkd.errors.ConfigError`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from dfkd import records
from dfkd.core.validate import integer, number, pos_int
from dfkd.data.real import real_row_count
from dfkd.data.datasets import Dataset
from dfkd.engine.alpha import AlphaSchedule
from dfkd.engine.distill import StudentConfig
from dfkd.engine.sources import TeacherSource
from dfkd.errors import ConfigError
from dfkd.imports import build


@dataclass
class Settings:
    """Everything one cell needs, validated: objects and plain values."""

    dataset: Dataset
    seeds: list[int]
    teacher: TeacherSource
    student_name: str
    student: StudentConfig
    student_inputs: tuple
    method_name: str
    method_target: str
    method_params: dict
    alpha_name: str
    alpha: AlphaSchedule
    n_train: int = 5000
    val_fraction: float = 0.1
    experiment: str = "adhoc"
    results_dir: Path = Path("results")
    teacher_dir: Path = Path("cache/teachers")
    data_dir: Path = Path("data")
    data_mirror: str | None = None
    device: str = "auto"
    threads: int = 0
    missing_data: str = "error"
    train_teachers_if_missing: bool = True
    progress: bool = True
    checkpoint_every_s: float = 300.0  # seconds between mid-run checkpoints of a stack; 0 = none (not in the hash)
    subset: dict = field(default_factory=dict)  # images only: {"train": n, "test": n}, None = all
    synthetic_samples: int = 50  # image runs: synthetic batch kept per seed for figures 9 and 10
    resolved: dict = field(default_factory=dict)  # the whole resolved config, kept in every record
    real_fraction: float | None = None  # the data-scarce setting (Kang & Kang 2024): None/0 = data-free
    real_rows: int | None = None  # or a row count instead of a fraction
    real_count: int = 0  # how many real training rows each seed gets (0: data-free)

    @property
    def variant(self) -> str:
        """The cell's one name: ``<method>-<alpha label>``, with ``-p<fraction>``/``-n<rows>`` given real rows."""
        return records.variant_name(self.method_name, self.alpha.label, records.real_label(
            self.real_fraction, self.real_rows))

    @property
    def teacher_name(self) -> str:
        return self.teacher.name

    @property
    def split_key(self):
        """What the split contributes to the teacher's key."""
        return self.dataset.teacher_split(self.n_train, self.val_fraction, self.subset)

    def teacher_key(self) -> str:
        """Hash of everything that determines a teacher besides its seed."""
        return self.teacher.key(self.dataset, self.split_key)


def seeds_from(cfg: dict) -> list[int]:
    """``seeds`` is a count (seeds first_seed .. first_seed+count-1) or an explicit list."""
    raw = cfg.get("seeds")
    if isinstance(raw, (list, tuple)):
        if not raw:
            raise ConfigError("seeds is an empty list: give a count (seeds=10) or a list (seeds=[1,2,3])")
        return list(dict.fromkeys(integer(s, "seeds", 0) for s in raw))
    count = pos_int(raw, "seeds")
    first = integer(cfg.get("first_seed", 1), "first_seed", 0)
    return list(range(first, first + count))


def _group(cfg: dict, group: str) -> dict:
    value = cfg.get(group)
    if not isinstance(value, dict):
        raise ConfigError(f"no {group} selected: add {group}=<name> (see conf/{group}/)")
    return dict(value)


def _choice(value, name: str, allowed: tuple) -> str:
    if value not in allowed:
        raise ConfigError(f"{name} must be {' or '.join(map(repr, allowed))}, got {value!r}")
    return value


def check_pairing(settings: Settings) -> None:
    """The teacher and the student must take the dataset's kind of input (``Dataset.inputs``).

    Checked when a cell starts (:func:`dfkd.cell.load_data`), not when a config is composed, so that
    every option of every group still composes and validates on its own.
    """
    dataset = settings.dataset
    wrong = ([f"teacher={settings.teacher.name}"] if dataset.inputs not in settings.teacher.inputs else []) + \
        ([f"student={settings.student_name}"] if dataset.inputs not in settings.student_inputs else [])
    if wrong:
        fit = "teacher=cnn10 student=cnn5" if dataset.inputs == "image" else "teacher=mlp500 student=mlp25 or mlp50"
        raise ConfigError(f"dataset {dataset.name} holds {dataset.inputs}s, which {' and '.join(wrong)} {'do' if len(wrong) > 1 else 'does'} not take: "
                          f"use {fit}")


def settings_from_dict(cfg: dict) -> Settings:
    """Validate a resolved config dict (see ``conf/config.yaml``) into :class:`Settings`.

    Raises:
        ConfigError: one line naming the bad value and how to fix it.
    """
    groups = {g: _group(cfg, g) for g in ("dataset", "teacher", "student", "method", "alpha")}
    dataset = build(groups["dataset"], f"dataset '{groups['dataset'].get('name')}'",
                    "its yaml must name a class, e.g. _target_: dfkd.data.datasets.TabularDataset")
    teacher = build(groups["teacher"], f"teacher '{groups['teacher'].get('name')}'",
                    f"check conf/teacher/{groups['teacher'].get('name')}.yaml")
    student = build(groups["student"], f"student '{groups['student'].get('name')}'",
                    f"check conf/student/{groups['student'].get('name')}.yaml")
    al = groups["alpha"]
    alpha = AlphaSchedule(schedule=str(al.get("schedule")), value=al.get("value", 0.0))
    batch, rows = cfg.get("batch_size"), cfg.get("rows_per_step")
    if batch not in (None, "auto"):
        batch = pos_int(batch, "batch_size")
    elif rows is not None:  # the paper's rule over another total than 100 (eSol: 10 rows per step)
        batch = alpha.default_batch_size(pos_int(rows, "rows_per_step"))
        if batch < 1:
            raise ConfigError(f"rows_per_step={rows} leaves no row per sample set: set rows_per_step=2 or more")
    else:
        batch = 0
    meth = groups["method"]
    target = meth.pop("_target_", None)
    method_name = str(meth.pop("name", "") or (target or "").rsplit(".", 1)[-1].lower())
    if not target:
        raise ConfigError(f"method '{method_name}' has no _target_: its yaml must name the class, "
                          f"e.g. _target_: dfkd.methods.direct.Direct")
    device = str(cfg.get("device", "auto"))
    if device not in ("auto", "cpu") and not device.startswith("cuda"):
        raise ConfigError(f"device must be auto, cpu or cuda[:N], got {device!r}")
    val_fraction = number(cfg.get("val_fraction"), "val_fraction")
    if not 0 < val_fraction < 1:
        raise ConfigError(f"val_fraction must be in (0, 1), got {val_fraction}")
    settings = Settings(
        dataset=dataset, seeds=seeds_from(cfg), teacher=teacher,
        student_name=student.name, student=student.config(cfg.get("epochs"), cfg.get("steps_per_epoch"), batch),
        student_inputs=student.inputs, method_name=method_name, method_target=str(target), method_params=meth,
        alpha_name=str(al.get("name", alpha.label)), alpha=alpha,
        n_train=pos_int(cfg.get("n_train"), "n_train"), val_fraction=val_fraction,
        experiment=str(cfg.get("experiment_name", "adhoc")),
        results_dir=Path(cfg.get("results_dir", "results")), teacher_dir=Path(cfg.get("teacher_dir", "cache/teachers")),
        data_dir=Path(cfg.get("data_dir", "data")), data_mirror=cfg.get("data_mirror") or None,
        device=device, threads=integer(cfg.get("threads") or 0, "threads", 0),
        missing_data=_choice(cfg.get("missing_data", "error"), "missing_data", ("error", "skip")),
        train_teachers_if_missing=bool(cfg.get("train_teachers_if_missing", True)),
        progress=bool(cfg.get("progress", True)),
        checkpoint_every_s=number(cfg.get("checkpoint_every_s", 300.0), "checkpoint_every_s"),
        subset=_subset(cfg), synthetic_samples=integer(cfg.get("synthetic_samples", 50) or 0, "synthetic_samples", 0),
        resolved=cfg)
    dataset.check_subset(settings.subset)
    settings.real_fraction, settings.real_rows = cfg.get("real_fraction") or None, cfg.get("real_rows") or None
    settings.real_count = real_row_count(settings.real_fraction, settings.real_rows, settings.n_train)
    build_method(settings)  # a bad method value fails here, before any data is loaded
    return settings


def _subset(cfg: dict) -> dict:
    """``subset: {train, test}`` image counts (None = all); only image datasets take it."""
    raw = cfg.get("subset") or {}
    if not isinstance(raw, dict) or set(raw) - {"train", "test"}:
        raise ConfigError(f"subset must be a mapping with keys train and test, got {raw!r}")
    return {k: (None if raw.get(k) is None else pos_int(raw[k], f"subset.{k}")) for k in ("train", "test")}


def build_method(settings: Settings):
    """A fresh instance of the method class named by ``_target_`` with the yaml's parameters."""
    return method_from_yaml({"_target_": settings.method_target, "name": settings.method_name,
                             **settings.method_params})


def method_from_yaml(method: dict):
    """A method object from its yaml as a dict (``_target_``, ``name`` and the class's parameters).

    ``start`` (the fraction of a method's starting points taken from real rows, any method) is not the
    class's parameter: it is set on the instance (:attr:`dfkd.methods.base.Method.start`)."""
    params = dict(method)
    name, start = params.pop("name", None), params.pop("start", 0.0)
    obj = build(params, f"method '{name}'", f"check conf/method/{name}.yaml")
    if name:
        obj.name = name  # the yaml's name (e.g. direct_mnist: the Direct class with eq. 8's terms)
    start = number(start, "method.start")
    if start > 1:
        raise ConfigError(f"method.start is the fraction of starting points taken from real rows: use 0..1, got {start}")
    obj.start = start
    return obj
