"""Run one cell of the paper: (dataset, teacher, student, method, alpha) over seeds.

Library code with no Hydra in it: :func:`settings_from_dict` validates a plain
config dict (what the Hydra entry points resolve) into :class:`Settings`, and
:func:`run_cell` does the work: load and split the data, fetch or train the
teachers, distil every seed whose record is not already there in one stack,
and write one record (and one trace file) per seed.
"""

from __future__ import annotations

import math
import os
import platform
import sys
import time
from dataclasses import MISSING, asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from dfkd import records
from dfkd.engine import cache
from dfkd.engine.alpha import AlphaSchedule
from dfkd.engine.checkpoint import Checkpoint, read_checkpoint
from dfkd.engine.distill import StudentConfig, distill
from dfkd.engine.perf import tune_process
from dfkd.engine.supervised import CNNTeacherConfig, train_supervised
from dfkd.engine.teacher import TeacherConfig, train_teachers
from dfkd.imports import instantiate
from dfkd.errors import ConfigError, DataMissingError, DfkdError
from dfkd.methods.base import Context
from dfkd.methods.sampler import make_sampler
from dfkd.models.blackbox import BlackBoxConfig, fit_blackbox_teachers
from dfkd.models.mlp import MLPStack

# Bump when a change to the protocol's code changes numbers, so stale records and teachers are redone.
PROTOCOL_VERSION = 1


@dataclass
class Settings:
    """Everything one cell needs, validated, as plain values."""

    dataset: dict
    seeds: list[int]
    teacher_name: str
    teacher: TeacherConfig | CNNTeacherConfig | BlackBoxConfig
    student_name: str
    student: StudentConfig
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


def pos_int(cfg: dict, key: str, where: str = "") -> int:
    """``cfg[key]`` as a positive integer, or a one-line ConfigError naming ``where`` + ``key`` and the fix."""
    value = cfg.get(key)
    name = f"{where}{key}"
    if isinstance(value, bool) or value is None:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}: set e.g. {name}=10")
    try:
        as_int = int(value)
        if float(value) != as_int:
            raise ValueError
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a positive integer, got {value!r}: set e.g. {name}=10") from None
    if as_int <= 0:
        raise ConfigError(f"{name} must be a positive integer, got {as_int}: set e.g. {name}=10")
    return as_int


def _number(cfg: dict, key: str, where: str = "", minimum: float | None = None) -> float:
    name = f"{where}{key}"
    try:
        value = float(cfg.get(key))
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a number, got {cfg.get(key)!r}") from None
    if not math.isfinite(value) or (minimum is not None and value < minimum):
        raise ConfigError(f"{name} must be a finite number >= {minimum}, got {value}")
    return value


def _mapping(cfg: dict, key: str, where: str = "") -> dict:
    value = cfg.get(key) or {}
    if not isinstance(value, dict):
        raise ConfigError(f"{where}{key} must be a mapping, got {value!r}")
    return dict(value)


def seeds_from(cfg: dict) -> list[int]:
    """``seeds`` is a count (seeds first_seed .. first_seed+count-1) or an explicit list."""
    raw = cfg.get("seeds")
    if isinstance(raw, (list, tuple)):
        if not raw:
            raise ConfigError("seeds is an empty list: give a count (seeds=10) or a list (seeds=[1,2,3])")
        out = [pos_int({"seeds": s}, "seeds") if not isinstance(s, int) or s < 0 else s for s in raw]
        return list(dict.fromkeys(int(s) for s in out))
    count = pos_int(cfg, "seeds")
    first = int(cfg.get("first_seed", 1))
    return list(range(first, first + count))


def settings_from_dict(cfg: dict) -> Settings:
    """Validate a resolved config dict (see ``conf/config.yaml``) into :class:`Settings`.

    Raises:
        ConfigError: one line naming the bad value and how to fix it.
    """
    for group in ("dataset", "teacher", "student", "method", "alpha"):
        if not isinstance(cfg.get(group), dict):
            raise ConfigError(f"no {group} selected: add {group}=<name> (see conf/{group}/)")
    t, s, meth, al = cfg["teacher"], cfg["student"], dict(cfg["method"]), cfg["alpha"]
    teacher = _teacher_config(t)
    alpha = AlphaSchedule(schedule=str(al.get("schedule")), value=al.get("value", 0.0))
    batch, rows = cfg.get("batch_size"), cfg.get("rows_per_step")
    if batch not in (None, "auto"):
        batch = pos_int(cfg, "batch_size")
    elif rows is not None:  # the paper's rule over another total than 100 (eSol: 10 rows per step)
        batch = alpha.default_batch_size(pos_int(cfg, "rows_per_step"))
        if batch < 1:
            raise ConfigError(f"rows_per_step={rows} leaves no row per sample set: set rows_per_step=2 or more")
    else:
        batch = 0
    s_arch = str(s.get("arch", "mlp"))
    student = StudentConfig(
        hidden=pos_int(s, "hidden", "student.") if s_arch == "mlp" else StudentConfig.hidden,
        lr=_number(s, "lr", "student.", 0),
        weight_decay=_number(s, "weight_decay", "student.", 0), epochs=pos_int(cfg, "epochs"),
        steps_per_epoch=pos_int(cfg, "steps_per_epoch"), batch_size=batch,
        arch=s_arch, loss=str(s.get("loss", "mse")),
        arch_params={} if s_arch == "mlp" else _mapping(s, "params", "student."),
        eval_chunk=int(s.get("eval_chunk", 0) or 0))
    target = meth.pop("_target_", None)
    method_name = str(meth.pop("name", "") or (target or "").rsplit(".", 1)[-1].lower())
    if not target:
        raise ConfigError(f"method '{method_name}' has no _target_: its yaml must name the class, "
                          f"e.g. _target_: dfkd.methods.direct.Direct")
    missing = cfg.get("missing_data", "error")
    if missing not in ("error", "skip"):
        raise ConfigError(f"missing_data must be 'error' or 'skip', got {missing!r}")
    device = str(cfg.get("device", "auto"))
    if device not in ("auto", "cpu") and not device.startswith("cuda"):
        raise ConfigError(f"device must be auto, cpu or cuda[:N], got {device!r}")
    val_fraction = _number(cfg, "val_fraction", minimum=0)
    if not 0 < val_fraction < 1:
        raise ConfigError(f"val_fraction must be in (0, 1), got {val_fraction}")
    return Settings(
        dataset=dict(cfg["dataset"]), seeds=seeds_from(cfg),
        teacher_name=str(t.get("name", "teacher")), teacher=teacher,
        student_name=str(s.get("name", f"mlp{student.hidden}")), student=student,
        method_name=method_name, method_target=target, method_params=meth,
        alpha_name=str(al.get("name", alpha.label)), alpha=alpha,
        n_train=pos_int(cfg, "n_train"), val_fraction=val_fraction,
        experiment=str(cfg.get("experiment_name", "adhoc")),
        results_dir=Path(cfg.get("results_dir", "results")), teacher_dir=Path(cfg.get("teacher_dir", "cache/teachers")),
        data_dir=Path(cfg.get("data_dir", "data")), data_mirror=cfg.get("data_mirror") or None,
        device=device, threads=int(cfg.get("threads") or 0), missing_data=missing,
        train_teachers_if_missing=bool(cfg.get("train_teachers_if_missing", True)),
        progress=bool(cfg.get("progress", True)),
        checkpoint_every_s=_number({"checkpoint_every_s": cfg.get("checkpoint_every_s", 300.0)},
                                   "checkpoint_every_s", minimum=0),
        subset=_subset(cfg, dict(cfg["dataset"])),
        synthetic_samples=int(cfg.get("synthetic_samples", 50) or 0), resolved=cfg)


def _subset(cfg: dict, dataset: dict) -> dict:
    """``subset: {train, test}`` image counts (None = all); only image datasets take it."""
    raw = cfg.get("subset") or {}
    if not isinstance(raw, dict) or set(raw) - {"train", "test"}:
        raise ConfigError(f"subset must be a mapping with keys train and test, got {raw!r}")
    out = {k: (None if raw.get(k) is None else pos_int(raw, k, "subset.")) for k in ("train", "test")}
    if any(v is not None for v in out.values()) and not is_image_dataset(dataset):
        raise ConfigError(f"subset.train/subset.test apply to image datasets only; for dataset "
                          f"{dataset.get('name')} use n_train and val_fraction")
    return out


def is_image_dataset(dataset: dict) -> bool:
    """Whether a dataset yaml describes images (MNIST's fixed split, ``input_shape`` of three sides)."""
    return dataset.get("format") == "mnist_idx"


def _teacher_config(t: dict):
    """The teacher group: a black box (``kind: blackbox``, any regressor with predict), else a network
    trained here: the tabular MLP (``arch: mlp``, the default) or an image network (``arch: cnn``)."""
    kind = str(t.get("kind", "network"))
    if kind == "blackbox":
        target = t.get("_target_")
        if not target:
            raise ConfigError("a black-box teacher needs _target_, the regressor class to fit "
                              "(e.g. _target_: sklearn.svm.SVR)")
        params = t.get("params") or {}
        if not isinstance(params, dict):
            raise ConfigError(f"teacher.params must be a mapping of keyword arguments, got {params!r}")
        return BlackBoxConfig(target=str(target), params=dict(params))
    if kind != "network":
        raise ConfigError(f"teacher kind '{kind}' unknown: use network (trained here; the default) or blackbox "
                          f"(any regressor with predict)")
    t_arch = str(t.get("arch", "mlp"))
    if t_arch == "mlp":
        return TeacherConfig(
            hidden=pos_int(t, "hidden", "teacher."), lr=_number(t, "lr", "teacher.", 0),
            weight_decay=_number(t, "weight_decay", "teacher.", 0), batch_size=pos_int(t, "batch_size", "teacher."),
            max_epochs=pos_int(t, "max_epochs", "teacher."), stop_after=pos_int(t, "stop_after", "teacher."),
            plateau_factor=_number(t, "plateau_factor", "teacher.", 0),
            plateau_patience=pos_int(t, "plateau_patience", "teacher."))
    return CNNTeacherConfig(
        arch=t_arch, arch_params=_mapping(t, "params", "teacher."), lr=_number(t, "lr", "teacher.", 0),
        weight_decay=_number(t, "weight_decay", "teacher.", 0), batch_size=pos_int(t, "batch_size", "teacher."),
        epochs=pos_int(t, "epochs", "teacher."), loss=str(t.get("loss", "logcosh")),
        seed=int(t.get("seed", 0)), eval_chunk=int(t.get("eval_chunk", 200)))


def resolve_device(device: str) -> torch.device:
    """``auto`` is cuda when available, else cpu."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device={device} but no CUDA device is available: use device=cpu or device=auto")
    return torch.device(device)


def build_method(settings: Settings):
    """Instantiate the method class named by ``_target_`` with the yaml's parameters."""
    method = instantiate(settings.method_target, settings.method_params, "method class",
                         f"check conf/method/{settings.method_name}.yaml")
    method.name = settings.method_name  # the yaml's name (e.g. direct_mnist: the Direct class with eq. 8's terms)
    return method


# -- data and teachers ------------------------------------------------------------
_SPLIT_KEYS = ("n_train", "val_fraction", "standardize", "train_seed", "val_seed")


def split_options(settings: Settings) -> dict:
    """How to split the dataset: the global ``n_train``/``val_fraction`` with the run seed (tables), or the
    dataset yaml's own ``split:`` block (eSol: a fixed, unscaled split; it takes precedence)."""
    own = settings.dataset.get("split")
    if own is None:
        return {"n_train": settings.n_train, "val_fraction": settings.val_fraction}
    if not isinstance(own, dict) or set(own) - set(_SPLIT_KEYS):
        raise ConfigError(f"dataset {settings.dataset.get('name')}: split must be a mapping of "
                          f"{', '.join(_SPLIT_KEYS)}, got {own!r}")
    return {"n_train": settings.n_train, "val_fraction": settings.val_fraction, **own}


def load_splits(settings: Settings, seeds: list[int]):
    """Load the dataset (installing from a mirror if one is set) and make each seed's split."""
    spec, splits, _ = load_data(settings, seeds)
    return spec, splits


def check_pairing(settings: Settings) -> None:
    """Image datasets need image networks (teacher=cnn10, student=cnn5) and tables need MLPs.

    Checked when a run starts, not when a config is composed, so that every option of every
    group still composes on its own.

    Raises:
        ConfigError: one line naming the options that fit.
    """
    name = settings.dataset.get("name")
    image = is_image_dataset(settings.dataset)
    image_teacher = isinstance(settings.teacher, CNNTeacherConfig)
    if image and not image_teacher:
        raise ConfigError(f"dataset {name} holds images: use an image teacher (teacher=cnn10), not "
                          f"teacher={settings.teacher_name}")
    if image and settings.student.arch == "mlp":
        raise ConfigError(f"dataset {name} holds images: use an image student (student=cnn5), not "
                          f"student={settings.student_name}")
    if not image and (image_teacher or settings.student.arch == "cnn"):
        raise ConfigError(f"teacher={settings.teacher_name} student={settings.student_name} need an image dataset "
                          f"(dataset=mnist); for dataset {name} use teacher=mlp500 and student=mlp25 or mlp50")


def load_data(settings: Settings, seeds: list[int]):
    """The dataset's spec, each seed's split and the :class:`~dfkd.methods.base.Context` of its inputs.

    Tables: a standardized split per seed and N(0, I) inputs; eSol: the dataset's own fixed,
    unscaled split and simplex rows (:func:`_tabular_context`). Images (MNIST): one fixed
    split shared by every seed (the same object), and per-pixel Gaussian inputs from the
    statistics of all training images, clipped to [0, 1].
    """
    from dfkd.data import DatasetSpec, load_dataset, make_split
    from dfkd.methods.sampler import make_sampler

    check_pairing(settings)
    spec = DatasetSpec.from_dict(settings.dataset)
    synthetic = dict(spec.extra.get("synthetic") or {"kind": "normal"})
    kind = synthetic.pop("kind", "normal")
    if is_image_dataset(settings.dataset):
        from dfkd.data.images import image_split, load_mnist, pixel_stats

        data = load_mnist(spec, data_dir=settings.data_dir, mirror=settings.data_mirror)
        sp = dict(spec.extra.get("split") or {})
        split = image_split(data, n_val=int(sp.get("n_val", 5000)), val_seed=int(sp.get("val_seed", 0)),
                            n_train=settings.subset.get("train"), n_test=settings.subset.get("test"))
        shape = tuple(int(v) for v in spec.extra.get("input_shape", (1, 28, 28)))
        mean, var = pixel_stats(data.train_images)
        sampler = make_sampler(kind, shape, mean=mean, var=var, **synthetic)
        return spec, [split] * len(seeds), Context(shape, sampler)
    X, y = load_dataset(spec, data_dir=settings.data_dir, mirror=settings.data_mirror)
    splits = [make_split(X, y, seed, **split_options(settings)) for seed in seeds]
    return spec, splits, _tabular_context(settings, spec, splits, kind, synthetic)


def _tabular_context(settings: Settings, spec, splits, kind: str, synthetic: dict) -> Context:
    """The base distribution of a table's synthetic rows, from its yaml's ``synthetic:`` block.

    ``kind: normal`` (the default) is N(0, I). ``kind: simplex`` (eSol) uses the training
    rows' per-feature mean and population std. ``bounds: train_range`` sets the search box
    (method=de) to the training rows' per-feature min and max, ``margin`` added to the max;
    without it the box is the sampler's own (simplex: [0, 1]; normal: none). Statistics come
    from the training rows, so they need one split shared by every seed.
    """
    synthetic = dict(synthetic)
    bounds_rule, margin = synthetic.pop("bounds", None), synthetic.pop("margin", 0.0)
    shape = (int(spec.n_features),)
    X = np.asarray(splits[0].X_train, dtype=np.float64)
    needs_rows = kind == "simplex" or bounds_rule is not None
    if needs_rows and any(s.X_train is not splits[0].X_train and not np.array_equal(X, s.X_train) for s in splits[1:]):
        raise ConfigError(f"dataset {spec.name}: synthetic statistics come from the training rows, which differ "
                          f"between seeds: give the dataset a fixed split (split: {{train_seed: ...}})")
    stats = {"mean": X.mean(0), "std": X.std(0)} if kind == "simplex" else {}
    sampler = make_sampler(kind, shape, **stats, **synthetic)
    bounds = None
    if bounds_rule is not None:
        if bounds_rule != "train_range":
            raise ConfigError(f"synthetic.bounds must be train_range (or absent), got {bounds_rule!r}")
        margin = _number({"margin": margin}, "margin", "synthetic.", 0)
        bounds = (torch.as_tensor(X.min(0), dtype=torch.float32),
                  torch.as_tensor(X.max(0) + margin, dtype=torch.float32))
    return Context(shape, sampler, bounds)


def data_fingerprint(settings: Settings) -> list:
    """The data files' checksums (what fixes the data's content)."""
    return sorted((f.get("path"), f.get("sha256")) for f in settings.dataset.get("files", []))


def teacher_key(settings: Settings) -> str:
    """Hash of everything that determines a teacher besides its seed."""
    if isinstance(settings.teacher, CNNTeacherConfig):
        return records.config_hash({
            "protocol": PROTOCOL_VERSION, "dataset": settings.dataset.get("name"), "data": data_fingerprint(settings),
            "split": [settings.dataset.get("split"), settings.subset.get("train")],
            "teacher": asdict(settings.teacher)})
    # a dataset's own split block (eSol) enters the key only when present, so tabular keys stay as they were
    split = [settings.n_train, settings.val_fraction] if "split" not in settings.dataset else split_options(settings)
    teacher = asdict(settings.teacher)
    if isinstance(settings.teacher, BlackBoxConfig):
        teacher["kind"] = "blackbox"
    return records.config_hash({
        "protocol": PROTOCOL_VERSION, "dataset": settings.dataset.get("name"), "data": data_fingerprint(settings),
        "split": split, "teacher": teacher})


def get_teachers(settings: Settings, seeds: list[int], splits, device, log=print):
    """The teachers for ``seeds``: from the cache, training (all missing seeds in one stack) what is not there.

    Returns:
        ``(stack, infos)`` with ``infos[r]`` holding ``val_rmse``, ``test_rmse`` and ``epochs`` of seed r's teacher.
    """
    if isinstance(settings.teacher, CNNTeacherConfig):
        return get_image_teacher(settings, seeds, splits, device, log)
    name = settings.dataset["name"]
    if isinstance(settings.teacher, BlackBoxConfig):
        # Fitting is fast (SVR on 2500 rows: a fraction of a second) and deterministic: no cache.
        teacher, infos = fit_blackbox_teachers(splits, settings.teacher.target, settings.teacher.params, device)
        rmse = sorted({round(i["test_rmse"], 6) for i in infos})
        log(f"[{name}] black-box teacher {settings.teacher.target} fitted: test RMSE {', '.join(map(str, rmse))}")
        return teacher, infos
    key = teacher_key(settings)
    d_in = int(settings.dataset["n_features"])
    expect = lambda seed: {"dataset": name, "seed": seed, "d_in": d_in, "hidden": settings.teacher.hidden,  # noqa: E731
                           "key": key}
    paths = {seed: cache.teacher_path(settings.teacher_dir, name, seed, key) for seed in seeds}
    with cache.file_lock(settings.teacher_dir / name / f".lock-{key}"):
        todo = [s for s in seeds if not paths[s].exists()]
        if todo:
            if not settings.train_teachers_if_missing:
                raise cache.TeacherError(
                    f"no cached teacher for {name} seed(s) {todo} under {settings.teacher_dir}: run `make teachers` "
                    f"(or drop train_teachers_if_missing=false)")
            idx = [seeds.index(s) for s in todo]
            log(f"[{name}] training {len(todo)} teacher(s) (seeds {todo[0]}..{todo[-1]}) in one stack")
            bar = progress_bar(settings, settings.teacher.max_epochs, f"{name} teachers")
            stack, infos = train_teachers([splits[i] for i in idx], todo, settings.teacher, device,
                                          progress=_teacher_progress(bar))
            if bar is not None:
                bar.close()
            for r, seed in enumerate(todo):
                meta = dict(expect(seed), **infos[r], created=now_utc(), git_commit=records.git_commit())
                cache.save_teacher(paths[seed], stack.replica_params(r), meta)
    loaded = [cache.load_teacher(paths[s], expect(s)) for s in seeds]
    stack = MLPStack.from_params([p for p, _ in loaded], device=device)
    return stack, [m for _, m in loaded]


def get_image_teacher(settings: Settings, seeds: list[int], splits, device, log=print):
    """The one image teacher (seed ``teacher.seed``) every run shares, from the cache or trained now.

    The paper reports a single teacher MAE (0.157, no spread), so all runs distil the same
    teacher; it is replicated over the students' stack.

    Returns:
        ``(stack, infos)`` with R identical replicas and R copies of the teacher's info.
    """
    from dfkd.models.cnn import CNNStack

    cfg = settings.teacher
    name = settings.dataset["name"]
    key = teacher_key(settings)
    shape = tuple(int(v) for v in settings.dataset.get("input_shape", (1, 28, 28)))
    expect = {"dataset": name, "seed": cfg.seed, "arch": cfg.arch, "key": key}
    path = cache.teacher_path(settings.teacher_dir, name, cfg.seed, key)
    with cache.file_lock(settings.teacher_dir / name / f".lock-{key}"):
        if not path.exists():
            if not settings.train_teachers_if_missing:
                raise cache.TeacherError(f"no cached {name} teacher under {settings.teacher_dir}: run `make teachers` "
                                         f"(or drop train_teachers_if_missing=false)")
            n = splits[0].X_train.shape[0]
            log(f"[{name}] training the {cfg.arch} teacher (seed {cfg.seed}) on {n} images for {cfg.epochs} epochs")
            bar = progress_bar(settings, cfg.epochs, f"{name} teacher")

            def progress(epoch, best):
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix_str(f"best val RMSE {best[0]:.4f}", refresh=False)
            stack, infos = train_supervised(splits[0], [cfg.seed], cfg, shape, device, progress=progress)
            if bar is not None:
                bar.close()
            log(f"[{name}] teacher: test MAE {infos[0]['test_mae']:.4f}, RMSE {infos[0]['test_rmse']:.4f} "
                f"(paper 0.157 / 0.165), best epoch {infos[0]['best_epoch'] + 1} of {cfg.epochs}")
            meta = dict(expect, **infos[0], created=now_utc(), git_commit=records.git_commit())
            cache.save_teacher(path, stack.replica_params(0), meta)
    params, meta = cache.load_teacher(path, expect, mlp_shape=False)
    stack = CNNStack.from_params([params] * len(seeds), device=device, input_shape=shape, **cfg.arch_params)
    return stack, [meta] * len(seeds)


def now_utc() -> str:
    """The current UTC time in ISO format, to the second (records' ``created``)."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def progress_bar(settings: Settings, total: int, desc: str):
    """A tqdm bar of ``total`` epochs, or None when ``settings.progress`` is off."""
    if not settings.progress:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="ep", mininterval=2.0, dynamic_ncols=True, file=sys.stderr)


def _teacher_progress(bar):
    if bar is None:
        return None

    def update(epoch, n_active, best):
        bar.update(1)
        bar.set_postfix_str(f"active {n_active}, best val RMSE {min(best):.4f}..{max(best):.4f}", refresh=False)
    return update


def _bar_resume(bar):
    """Start a progress bar at a resumed epoch (its rate then counts only the epochs run now)."""
    if bar is None:
        return None

    def resume(epoch):
        bar.initial = bar.n = bar.last_print_n = epoch
        bar.refresh()
    return resume


def student_progress(bar, every: int = 25):
    """The engine's progress callback for ``bar`` (None when there is no bar)."""
    if bar is None:
        return None

    def update(epoch, best_mse):
        bar.update(epoch + 1 - bar.n)  # a resumed stack's first epoch is not 0
        if epoch % every == 0:
            rmse = best_mse.sqrt()
            bar.set_postfix_str(f"best val RMSE {rmse.min().item():.4f}..{rmse.max().item():.4f}", refresh=False)
    return update


# -- the cell ---------------------------------------------------------------------
def _hashed_fields(config) -> dict:
    """A config dataclass as a dict for hashing, without fields added after protocol 1 that sit at their
    default: so the tabular records and teachers made before those fields existed stay valid."""
    out = asdict(config)
    for name in getattr(config, "LATE_FIELDS", ()):
        if name in out and out[name] == _field_default(type(config), name):
            del out[name]
    return out


def _field_default(cls, name):
    f = cls.__dataclass_fields__[name]
    return f.default if f.default_factory is MISSING else f.default_factory()


def cell_hash(settings: Settings, seed: int, batch_size: int) -> str:
    """Hash of everything that determines one seed's student result."""
    return records.config_hash({
        "protocol": PROTOCOL_VERSION, "teacher_key": teacher_key(settings), "seed": seed,
        "student": _hashed_fields(settings.student), "batch_size": batch_size,
        "method": [settings.method_target, settings.method_params],
        "alpha": [settings.alpha.schedule, float(settings.alpha.value)],
        # image runs only (keeps tabular hashes): the test subset and the kept synthetic batch
        **({"subset": settings.subset, "samples": settings.synthetic_samples}
           if is_image_dataset(settings.dataset) else {})})


def check_writable(folder: Path) -> None:
    """Fail early, before any training, if results cannot be written to ``folder``."""
    try:
        Path(folder).mkdir(parents=True, exist_ok=True)
        records.atomic_write_bytes(Path(folder) / ".dfkd-write-test", b"ok")
        (Path(folder) / ".dfkd-write-test").unlink()
    except OSError as exc:
        raise ConfigError(f"cannot write results to {folder} ({exc.strerror or exc}): fix its permissions or "
                          f"choose another folder with results_dir=...") from None


def _cell_logger(log, cell_dir: Path):
    """Log to the caller and append to the cell's own ``run.log`` beside its records."""
    path = Path(cell_dir) / "run.log"

    def emit(message: str) -> None:
        log(message)
        try:
            with open(path, "a") as fh:
                fh.write(f"[{now_utc()}] {message}\n")
        except OSError:
            pass  # the log is a convenience; the record is the result
    return emit


def _pending_seeds(settings: Settings, paths: dict, hashes: dict, cell_dir: Path, log) -> list[int]:
    """Seeds without a valid record of the current config; records of a committed stack are restored first."""
    _restore_from_stack_files(cell_dir, paths, hashes, log)
    pending = []
    for s in settings.seeds:
        rec = records.read_record(paths[s])
        if rec is None and paths[s].exists():
            log(f"record {paths[s]} is damaged or of another schema: redoing seed {s}")
        if rec is None or rec.get("config_hash") != hashes[s]:
            pending.append(s)
        elif rec.get("status") != "ok":
            log(f"seed {s} failed earlier ({rec.get('failure_reason')}): kept as failed; delete {paths[s]} to retry")
    return pending


def _stack_key(pending: list[int], hashes: dict) -> str:
    """The name shared by a stack's commit file and its checkpoint: a hash of its seeds' config hashes."""
    return records.config_hash([hashes[s] for s in pending])


def _checkpoint_path(cell_dir: Path, key: str) -> Path:
    return Path(cell_dir) / f".ckpt-{key}.pt"


def _restore_from_stack_files(cell_dir: Path, paths: dict, hashes: dict, log) -> None:
    """Write records that a finished stack committed but an interruption kept from being written."""
    for stack_file in sorted(Path(cell_dir).glob(".stack-*.json")):
        stack = records.read_record(stack_file)
        if stack is None:
            stack_file.unlink(missing_ok=True)  # never committed: its run is redone (from its checkpoint, if any)
            continue
        # committed: a checkpoint of the same stack is no longer needed
        _checkpoint_path(cell_dir, stack_file.name[len(".stack-"):].rsplit("-", 1)[0]).unlink(missing_ok=True)
        for rec in stack.get("records", []):
            seed = rec.get("seed")
            if seed in paths and rec.get("config_hash") == hashes.get(seed):
                current = records.read_record(paths[seed])
                if current is None or current.get("config_hash") != hashes[seed]:
                    records.write_json(paths[seed], rec)
                    log(f"restored the record of seed {seed} from its committed stack {stack_file.name}")
        stack_file.unlink(missing_ok=True)


def _remove_spent_checkpoints(cell_dir: Path, log) -> None:
    """Delete checkpoints every one of whose seeds has since finished with the checkpoint's config hash.

    Such files are left by a stack that another grouping of the same seeds finished (say seeds 1-5 checkpointed,
    then rerun as [1,2,3] and [4,5]); nothing can resume from them. A checkpoint with an unfinished seed may
    belong to a running worker and is kept, as is one that cannot be read.
    """
    for path in sorted(Path(cell_dir).glob(".ckpt-*.pt")):
        try:
            key = read_checkpoint(path)["key"]
            seeds, hashes = list(key["seeds"]), list(key["hashes"])
        except Exception:  # damaged, foreign, or removed meanwhile: the run that owns it reports it
            continue
        finished = [(records.read_record(records.record_path(cell_dir, seed)) or {}).get("config_hash") == h
                    for seed, h in zip(seeds, hashes)]
        if seeds and all(finished):
            path.unlink(missing_ok=True)
            log(f"removed spent checkpoint {path.name}: its seeds {seeds} have finished")


def run_cell(settings: Settings, log=print) -> dict:
    """Distil every pending seed of one cell and write its records.

    Crash safety: per-seed traces are written first, then the whole stack's
    records in one atomic file (the commit point), then one record per seed;
    an interruption anywhere leaves either nothing of the stack (it is redone)
    or a committed stack whose records are restored on the next run, never a
    mix. Records are never recomputed once their config hash matches.

    Returns:
        A summary: ``{"status": "done"|"skipped"|"missing_data", "records": [paths], "ran": [seeds]}``.
    """
    t_start = time.perf_counter()
    tune_process(settings.threads)
    device = resolve_device(settings.device)
    name = settings.dataset["name"]
    check_writable(settings.results_dir)
    cell_dir = records.record_dir(settings.results_dir, name, settings.student_name, settings.method_name,
                                  settings.alpha.label)
    label = f"{name} {settings.student_name} {settings.method_name}/{settings.alpha.label}"
    cell_dir.mkdir(parents=True, exist_ok=True)
    outer = log
    log = _cell_logger(lambda msg: outer(f"[{label}] {msg}"), cell_dir)
    batch = settings.student.batch_size or settings.alpha.default_batch_size()
    hashes = {s: cell_hash(settings, s, batch) for s in settings.seeds}
    paths = {s: records.record_path(cell_dir, s) for s in settings.seeds}
    pending = _pending_seeds(settings, paths, hashes, cell_dir, log)
    if not pending:
        _remove_spent_checkpoints(cell_dir, log)
        log(f"all {len(settings.seeds)} seed(s) already done: skipping")
        return {"status": "skipped", "records": [str(p) for p in paths.values()], "ran": []}
    bookkeeping = time.perf_counter() - t_start
    t_data = time.perf_counter()
    try:
        spec, splits, context = load_data(settings, pending)
    except DataMissingError as exc:
        if settings.missing_data == "skip":
            log(f"not run (data missing): {exc}")
            return {"status": "missing_data", "records": [], "ran": []}
        raise
    data_s = time.perf_counter() - t_data
    teacher, tinfo = get_teachers(settings, pending, splits, device, log)
    method = build_method(settings)
    log(f"distilling seeds {pending} (R={len(pending)}) on {device} (m={batch}, {settings.student.epochs} epochs)")
    bar = progress_bar(settings, settings.student.epochs, f"{label} R={len(pending)}")
    key = _stack_key(pending, hashes)
    # Mid-run checkpoints: one file per stack (its seeds and their hashes), resumed from on a rerun.
    checkpoint = Checkpoint(_checkpoint_path(cell_dir, key), settings.checkpoint_every_s,
                            key={"seeds": pending, "hashes": [hashes[s] for s in pending]}, log=log,
                            on_resume=_bar_resume(bar), commit=records.git_commit())
    t0 = time.perf_counter()
    image = is_image_dataset(settings.dataset)
    results, traces, _, _ = distill(teacher, splits, pending, method, settings.alpha, settings.student, device,
                                    progress=student_progress(bar), context=context,
                                    keep_samples=settings.synthetic_samples if image else 0, checkpoint=checkpoint)
    queries = getattr(teacher, "queries", None)  # rows asked of a black-box teacher, per replica
    if bar is not None:
        bar.close()
    # training time: this run's (without checkpoint reads and writes) plus earlier runs' up to the checkpoint
    wall = time.perf_counter() - t0 - checkpoint.seconds + checkpoint.prior_s
    bookkeeping += checkpoint.seconds
    t_write = time.perf_counter()
    recs = []
    for r, seed in enumerate(pending):
        res = results[r]
        trace_path = paths[seed].with_suffix(".trace.npz")
        _write_trace(trace_path, {k: (v[r] if k.startswith("synthetic_") else v[:, r]).numpy()
                                  for k, v in traces.items()})
        rec = _record(settings, seed, res, tinfo[r], hashes[seed], device, wall, len(pending), trace_path)
        if queries is not None:
            rec["teacher_queries"] = int(queries[r])
        if checkpoint.resumed_epoch is not None:  # trained in several runs: which code trained which epochs
            rec["training_segments"] = checkpoint.segments
        if image:
            rec.update(student_loss=settings.student.loss, subset=settings.subset,
                       n_train_images=int(splits[0].X_train.shape[0]), n_val_images=int(splits[0].X_val.shape[0]),
                       n_test_images=int(splits[0].X_test.shape[0]),
                       synthetic_samples=int(traces["synthetic_t"].shape[1]) if "synthetic_t" in traces else 0)
        recs.append(rec)
    bookkeeping += time.perf_counter() - t_write
    for rec in recs:  # what resume checks, traces and data verification cost, for `make bench`
        rec.update(bookkeeping_s=bookkeeping / len(recs), data_s=data_s / len(recs))
    stack_file = cell_dir / f".stack-{key}-{os.getpid()}.json"
    records.write_json(stack_file, {"schema": records.SCHEMA, "records": recs})  # the commit point
    checkpoint.remove()
    for rec in recs:
        records.write_json(paths[rec["seed"]], rec)
    stack_file.unlink(missing_ok=True)
    _remove_spent_checkpoints(cell_dir, log)
    failed = [rec["seed"] for rec in recs if rec["status"] != "ok"]
    ok = [rec["test_rmse"] for rec in recs if rec["status"] == "ok"]
    mae = f", MAE {float(np.mean([r['test_mae'] for r in recs if r['status'] == 'ok'])):.4f}" if image and ok else ""
    log(f"done in {wall:.1f}s: test RMSE mean {np.mean(ok) if ok else float('nan'):.4f}{mae} over {len(ok)} seed(s)"
        + (f"; FAILED (diverged): seeds {failed}" if failed else "") + f" -> {cell_dir}")
    return {"status": "done", "records": [str(paths[s]) for s in pending], "ran": pending}


def record_status(res: dict, tinfo: dict) -> tuple[str, str | None]:
    """A run's status and failure reason: failed when its teacher (no finite validation loss) or its
    student (non-finite loss) diverged."""
    failure = tinfo.get("failure_reason") or res.get("failure_reason")
    return ("failed" if failure else "ok"), failure


def _record(settings: Settings, seed: int, res: dict, tinfo: dict, config_hash: str, device, wall: float,
            replicas: int, trace_path: Path) -> dict:
    """One run's flat, self-describing record (failed when its teacher or the student diverged)."""
    status, failure = record_status(res, tinfo)
    return {
        "schema": records.SCHEMA, "kind": "distill", "experiment": settings.experiment,
        "dataset": settings.dataset["name"], "method": settings.method_name, "alpha": settings.alpha.label,
        "variant": f"{settings.method_name}/{settings.alpha.label}", "student": settings.student_name,
        "student_hidden": settings.student.hidden if settings.student.arch == "mlp" else None,
        "student_arch": settings.student.arch, "teacher": settings.teacher_name, "seed": seed,
        "status": status, "failure_reason": failure,
        **{k: res[k] for k in ("test_rmse", "test_mae", "test_rmse_last", "test_mae_last", "best_epoch",
                               "val_rmse_best")},
        "teacher_test_rmse": tinfo["test_rmse"], "teacher_test_mae": tinfo.get("test_mae"),
        "teacher_val_rmse": tinfo["val_rmse"],
        "teacher_epochs": tinfo["epochs"],
        "epochs": settings.student.epochs, "epochs_run": res["epochs_run"],
        "steps_per_epoch": settings.student.steps_per_epoch, "batch_size": res["batch_size"],
        "replicas": replicas, "wall_time_s": wall / replicas, "stack_wall_time_s": wall,
        "config_hash": config_hash, "teacher_key": teacher_key(settings), "git_commit": records.git_commit(),
        "device": str(device), "threads": torch.get_num_threads(), "host": platform.node(),
        "torch_version": torch.__version__, "numpy_version": np.__version__,
        "python_version": platform.python_version(), "created": now_utc(),
        "data_sha256": data_fingerprint(settings), "method_params": settings.method_params,
        "alpha_schedule": settings.alpha.schedule, "alpha_value": float(settings.alpha.value),
        "trace_file": trace_path.name, "config": settings.resolved,
    }


def _write_trace(path: Path, arrays: dict) -> None:
    import io

    buf = io.BytesIO()
    np.savez_compressed(buf, **{k: v.astype(np.float32) for k, v in arrays.items()})
    records.atomic_write_bytes(path, buf.getvalue())


def run_teachers(settings: Settings, log=print) -> list[dict]:
    """Train (or verify the cache of) the teachers of every seed; returns their infos."""
    tune_process(settings.threads)
    device = resolve_device(settings.device)
    try:
        _, splits = load_splits(settings, settings.seeds)
    except DataMissingError as exc:
        if settings.missing_data == "skip":
            log(f"[{settings.dataset['name']}] teachers not trained (data missing): {exc}")
            return []
        raise
    _, infos = get_teachers(settings, settings.seeds, splits, device, log)
    bad = [s for s, i in zip(settings.seeds, infos) if i.get("failure_reason")]
    if bad:
        log(f"[{settings.dataset['name']}] FAILED teacher(s), seeds {bad}: {infos[settings.seeds.index(bad[0])]['failure_reason']}"
            f"; their students will be recorded as failed")
    rmse = [i["test_rmse"] for i in infos]
    log(f"[{settings.dataset['name']}] {len(infos)} teacher(s): test RMSE {np.mean(rmse):.4f} +- {np.std(rmse):.4f}, "
        f"epochs {min(i['epochs'] for i in infos)}..{max(i['epochs'] for i in infos)}")
    return infos


__all__ = ["Settings", "settings_from_dict", "run_cell", "run_teachers", "DfkdError"]
