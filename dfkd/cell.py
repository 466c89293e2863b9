"""One cell of the paper: dataset x teacher x student x method x alpha over seeds, with a training budget.

:func:`run_cell` loads the data, gets the teachers, distils every seed whose record is not already
there in one stack, and writes one record (and one trace file) per seed. It knows its parts only
through their interfaces (:class:`~dfkd.data.datasets.Dataset`,
:class:`~dfkd.engine.sources.TeacherSource`, :class:`~dfkd.methods.base.Method`), built by
:func:`dfkd.settings.settings_from_dict`.
"""

from __future__ import annotations

import platform
import time
from dataclasses import asdict, MISSING

import numpy as np
import torch

from dfkd import records, store
from dfkd.core.progress import bar_resume, progress_bar, student_progress
from dfkd.data.real import RealRows
from dfkd.engine.checkpoint import Checkpoint
from dfkd.engine.distill import distill
from dfkd.engine.perf import tune_process
from dfkd.engine.sources import PROTOCOL_VERSION
from dfkd.errors import ConfigError, DataMissingError
from dfkd.settings import Settings, build_method, check_pairing


def resolve_device(device: str) -> torch.device:
    """``auto`` is cuda when available, else cpu."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device={device} but no CUDA device is available: use device=cpu or device=auto")
    return torch.device(device)


def load_data(settings: Settings, seeds: list[int]):
    """``(splits, context)``: each seed's split and the synthetic inputs' context (after checking that the
    teacher and the student take the dataset's inputs)."""
    check_pairing(settings)
    return settings.dataset.load(seeds, settings.n_train, settings.val_fraction, settings.subset,
                                 settings.data_dir, settings.data_mirror)


def get_teachers(settings: Settings, seeds: list[int], splits, device, log=print):
    """The teachers of ``seeds`` as one stack, and their infos (from the cache, or trained now)."""
    return settings.teacher.get(settings.dataset, seeds, splits, device, settings.teacher_key(), settings.teacher_dir,
                                train_if_missing=settings.train_teachers_if_missing, progress=settings.progress,
                                log=log)


def _hashed_fields(config) -> dict:
    """A config dataclass as a dict for hashing, without fields added after protocol 1 that sit at their
    default: so the tabular records and teachers made before those fields existed stay valid."""
    out = asdict(config)
    for name in getattr(config, "LATE_FIELDS", ()):
        f = type(config).__dataclass_fields__[name]
        default = f.default if f.default_factory is MISSING else f.default_factory()
        if name in out and out[name] == default:
            del out[name]
    return out


def cell_hash(settings: Settings, seed: int, batch_size: int) -> str:
    """Hash of everything that determines one seed's student result."""
    return records.config_hash({
        "protocol": PROTOCOL_VERSION, "teacher_key": settings.teacher_key(), "seed": seed,
        "student": _hashed_fields(settings.student), "batch_size": batch_size,
        "method": [settings.method_target, settings.method_params],
        "alpha": [settings.alpha.schedule, float(settings.alpha.value)],
        **settings.dataset.cell_extra(settings.subset, settings.synthetic_samples),
        **getattr(settings.teacher, "cell_extra", dict)(),  # optional; {} leaves a hash as it was
        **({"real_rows": settings.real_count} if settings.real_count else {})})  # data-free cells: hashes unchanged


def run_cell(settings: Settings, log=print) -> dict:
    """Distil every pending seed of one cell and write its records (crash-safe: see :mod:`dfkd.store`).

    Returns:
        A summary: ``{"status": "done"|"skipped"|"missing_data", "records": [paths], "ran": [seeds]}``.
    """
    t_start = time.perf_counter()
    tune_process(settings.threads)
    device = resolve_device(settings.device)
    name = settings.dataset.name
    store.check_writable(settings.results_dir)
    cell_dir = records.record_dir(settings.results_dir, name, settings.student_name, settings.variant)
    label = f"{name} {settings.student_name} {settings.variant}"
    cell_dir.mkdir(parents=True, exist_ok=True)
    outer = log
    log = store.cell_logger(lambda msg: outer(f"[{label}] {msg}"), cell_dir)
    batch = settings.student.batch_size or settings.alpha.default_batch_size()
    hashes = {s: cell_hash(settings, s, batch) for s in settings.seeds}
    paths = {s: records.record_path(cell_dir, s) for s in settings.seeds}
    pending = store.pending_seeds(settings.seeds, paths, hashes, cell_dir, log)
    if not pending:
        store.remove_spent_checkpoints(cell_dir, log)
        log(f"all {len(settings.seeds)} seed(s) already done: skipping")
        return {"status": "skipped", "records": [str(p) for p in paths.values()], "ran": []}
    bookkeeping = time.perf_counter() - t_start
    t_data = time.perf_counter()
    try:
        splits, context = load_data(settings, pending)
    except DataMissingError as exc:
        if settings.missing_data == "skip":
            log(f"not run (data missing): {exc}")
            return {"status": "missing_data", "records": [], "ran": []}
        raise
    data_s = time.perf_counter() - t_data
    teacher, tinfo = get_teachers(settings, pending, splits, device, log)
    method = build_method(settings)
    log(f"distilling seeds {pending} (R={len(pending)}) on {device} (m={batch}, {settings.student.epochs} epochs)")
    bar = progress_bar(settings.progress, settings.student.epochs, f"{label} R={len(pending)}")
    key = store.stack_key(pending, hashes)
    # Mid-run checkpoints: one file per stack (its seeds and their hashes), resumed from on a rerun.
    checkpoint = Checkpoint(store.checkpoint_path(cell_dir, key), settings.checkpoint_every_s,
                            key={"seeds": pending, "hashes": [hashes[s] for s in pending]}, log=log,
                            on_resume=bar_resume(bar), commit=records.git_commit(),
                            teachers=[float(tinfo[r]["test_rmse"]) for r in range(len(pending))])
    t0 = time.perf_counter()
    keep = settings.synthetic_samples if settings.dataset.keep_samples else 0
    real = (RealRows.from_splits(splits, settings.real_count, context.input_shape, device)
            if settings.real_count else None)
    results, traces, _, _ = distill(teacher, splits, pending, method, settings.alpha, settings.student, device,
                                    progress=student_progress(bar), context=context, keep_samples=keep,
                                    checkpoint=checkpoint, real=real)
    queries = getattr(teacher, "queries", None)  # rows asked of a black-box teacher, per replica
    if bar is not None:
        bar.close()
    # training time: this run's (without checkpoint reads and writes) plus earlier runs' up to the checkpoint
    wall = time.perf_counter() - t0 - checkpoint.seconds + checkpoint.prior_s
    bookkeeping += checkpoint.seconds
    t_write = time.perf_counter()
    recs = []
    for r, seed in enumerate(pending):
        trace_path = paths[seed].with_suffix(".trace.npz")
        store.write_trace(trace_path, {k: (v[r] if k.startswith("synthetic_") else v[:, r]).numpy()
                                       for k, v in traces.items()})
        rec = _record(settings, seed, results[r], tinfo[r], hashes[seed], device, wall, len(pending), trace_path)
        if queries is not None:
            rec.teacher_queries = int(queries[r])
        if checkpoint.resumed_epoch is not None:  # trained in several runs: which code trained which epochs
            rec.training_segments = checkpoint.segments
        if settings.dataset.keep_samples:
            rec.student_loss, rec.subset = settings.student.loss, settings.subset
            rec.synthetic_samples = int(traces["synthetic_t"].shape[1]) if "synthetic_t" in traces else 0
        for key, value in settings.dataset.record_extra(splits).items():
            setattr(rec, key, value)
        recs.append(rec)
    bookkeeping += time.perf_counter() - t_write
    for rec in recs:  # what resume checks, traces and data verification cost, for `make bench`
        rec.bookkeeping_s, rec.data_s = bookkeeping / len(recs), data_s / len(recs)
    recs = [rec.to_dict() for rec in recs]
    store.commit_stack(cell_dir, key, recs, checkpoint)
    store.remove_spent_checkpoints(cell_dir, log)
    failed = [rec["seed"] for rec in recs if rec["status"] != "ok"]
    ok = [rec for rec in recs if rec["status"] == "ok"]
    rmse = np.mean([r["test_rmse"] for r in ok]) if ok else float("nan")
    mae = f", MAE {float(np.mean([r['test_mae'] for r in ok])):.4f}" if settings.dataset.keep_samples and ok else ""
    log(f"done in {wall:.1f}s: test RMSE mean {rmse:.4f}{mae} over {len(ok)} seed(s)"
        + (f"; FAILED (diverged): seeds {failed}" if failed else "") + f" -> {cell_dir}")
    return {"status": "done", "records": [str(paths[s]) for s in pending], "ran": pending}


def record_status(res: dict, tinfo: dict) -> tuple[str, str | None]:
    """A run's status and failure reason: failed when its teacher (no finite validation loss) or its
    student (non-finite loss) diverged."""
    failure = tinfo.get("failure_reason") or res.get("failure_reason")
    return ("failed" if failure else "ok"), failure


def _record(settings: Settings, seed: int, res: dict, tinfo: dict, config_hash: str, device, wall: float,
            replicas: int, trace_path) -> records.Record:
    """One run's flat, self-describing record (failed when its teacher or the student diverged)."""
    status, failure = record_status(res, tinfo)
    return records.Record(
        experiment=settings.experiment, dataset=settings.dataset.name, method=settings.method_name,
        alpha=settings.alpha.label, student=settings.student_name,
        student_hidden=settings.student.hidden if settings.student.arch == "mlp" else None,
        student_arch=settings.student.arch, teacher=settings.teacher_name, seed=seed,
        status=status, failure_reason=failure,
        **{k: res[k] for k in ("test_rmse", "test_mae", "test_rmse_last", "test_mae_last", "best_epoch",
                               "val_rmse_best", "epochs_run", "batch_size")},
        teacher_test_rmse=tinfo["test_rmse"], teacher_test_mae=tinfo.get("test_mae"),
        teacher_val_rmse=tinfo["val_rmse"], teacher_epochs=tinfo["epochs"],
        epochs=settings.student.epochs, steps_per_epoch=settings.student.steps_per_epoch,
        replicas=replicas, wall_time_s=wall / replicas, stack_wall_time_s=wall,
        config_hash=config_hash, teacher_key=settings.teacher_key(), git_commit=records.git_commit(),
        device=str(device), threads=torch.get_num_threads(), host=platform.node(), cpu=records.cpu_fingerprint(),
        torch_version=torch.__version__, numpy_version=np.__version__,
        python_version=platform.python_version(), created=records.now_utc(),
        data_sha256=settings.dataset.fingerprint(), method_params=settings.method_params,
        alpha_schedule=settings.alpha.schedule, alpha_value=float(settings.alpha.value),
        trace_file=trace_path.name, config=settings.resolved,
        real_fraction=settings.real_fraction, real_rows=settings.real_count or None)


def run_teachers(settings: Settings, log=print) -> list[dict]:
    """Train (or verify the cache of) the teachers of every seed; returns their infos."""
    tune_process(settings.threads)
    device = resolve_device(settings.device)
    name = settings.dataset.name
    try:
        splits, _ = load_data(settings, settings.seeds)
    except DataMissingError as exc:
        if settings.missing_data == "skip":
            log(f"[{name}] teachers not trained (data missing): {exc}")
            return []
        raise
    _, infos = get_teachers(settings, settings.seeds, splits, device, log)
    bad = [s for s, i in zip(settings.seeds, infos) if i.get("failure_reason")]
    if bad:
        log(f"[{name}] FAILED teacher(s), seeds {bad}: {infos[settings.seeds.index(bad[0])]['failure_reason']}"
            f"; their students will be recorded as failed")
    rmse = [i["test_rmse"] for i in infos]
    log(f"[{name}] {len(infos)} teacher(s): test RMSE {np.mean(rmse):.4f} +- {np.std(rmse):.4f}, "
        f"epochs {min(i['epochs'] for i in infos)}..{max(i['epochs'] for i in infos)}")
    return infos
