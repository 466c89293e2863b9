"""Speed of the distillation engine, printed as figures (``make bench``).

The variants are the columns of the paper's tables (``experiments/table4.py`` for the tabular lines,
``table5.py`` for MNIST), each built from its ``conf/variant/<name>.yaml`` (method and alpha).

For each dataset and variant: student-epochs per second of the batched engine
(R replicas in one stack) and of the one-model reference loop, their ratio, and
the batched engine's matmul GFLOP/s beside a plain large matmul measured in the
same run, and the ratio's ceiling: what batched/loop would be if the batched
engine's matmuls ran at the plain matmul rate and nothing else cost any time;
and its data cap: what batched/loop would be if the students' own training,
validation and bookkeeping cost nothing, so that only the synthetic inputs and
their teacher labels (generator or input updates, forward passes, random draws)
remained, timed alone with the same shapes and draws.
Inputs have the real datasets' shapes (features, validation rows); the
teacher's weights are random, which changes no cost. All timings are CPU
seconds of one single-threaded process (``time.process_time``), batched and loop
measured in turn three times, the best of each kept, so they compare as ratios
even on a shared, noisy machine.

    python -m dfkd.bench                       # cpusmall and indoorloc, all five variants; MNIST lines; eSol lines
    python -m dfkd.bench --datasets pole --variants direct-decreasing --replicas 10
    python -m dfkd.bench --datasets none --mnist-variants direct_mnist-decreasing --no-protein
    python -m dfkd.bench --datasets none --mnist-variants none     # only the eSol lines

MNIST lines: the CNN engine with R = 5 replicas in one stack (grouped convolutions)
against the same engine run for one model at a time (R = 1), with the paper's
shapes (m = 50, 10 steps per epoch, 5000 validation images) and random weights.
Times are CPU seconds of this process (``time.process_time``), single-threaded,
so they hold on a busy machine.

eSol lines: differential evolution (one student step's synthetic rows for one
replica) with each generation's population evaluated in one teacher call and
one student call (scipy's vectorized mode) against one candidate per call, and
the Table 6 protocol's CPU time estimated from one measured epoch of each of
its two cells (real eSol data when installed or mirrored, else random rows of
its shapes).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from dfkd.data.registry import load_spec
from dfkd.data.split import Split
from dfkd.core import rng
from dfkd.engine.alpha import AlphaSchedule
from dfkd.engine.distill import StudentConfig, distill, synthetic_batch
from dfkd.engine.perf import tune_process
from dfkd.engine.reference import distill_reference, has_reference
from dfkd.data.context import default_context
from dfkd.models.mlp import MLPStack, mlp_module

def variant_settings(names) -> dict:
    """``{name: (method yaml as a dict, AlphaSchedule)}`` of each ``conf/variant/<name>.yaml``, as Hydra composes it."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from dfkd.cli import CONF_DIR

    out = {}
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        for name in names:
            cfg = compose("config", overrides=[f"variant={name}", "data_mirror=null"])
            method = OmegaConf.to_container(cfg.method, resolve=True)
            out[name] = (method, AlphaSchedule(cfg.alpha.schedule, cfg.alpha.value))
    return out


def _table_variants(table: str) -> list[str]:
    from dfkd.report.tables import load_table_specs, variant_names

    return variant_names(load_table_specs()[table])


def _benchmark_variants() -> list[str]:
    """The conf variants of the benchmark artefacts' columns (``experiments/methods.py``, ``scarce.py``), in order,
    without their real-row suffix (a scarce column ``tsm-1-p0.1`` is ``variant=tsm-1`` with ``real_fraction``)."""
    from dfkd.report.benchmark import load_benchmark_specs

    names = [col.get("base", col["variant"]) for spec in load_benchmark_specs().values() for col in spec["columns"]]
    return list(dict.fromkeys(names))


#: The tabular variants: Table 4's columns (Tables 3 and 4 share them; the one-model loop knows their methods).
TABULAR_TABLE = "table4"
#: The MNIST variants: Table 5's columns.
MNIST_TABLE = "table5"
_SETTINGS: dict = {}


def _variant(name: str):
    """``(method yaml as a dict, alpha)`` of a variant (composed once)."""
    if name not in _SETTINGS:
        _SETTINGS.update(variant_settings([name]))
    return _SETTINGS[name]


def _matmul_gflops(seconds: float = 2.0, n: int = 2048, clock=time.perf_counter) -> float:
    """GFLOP/s of a plain n x n float32 matmul over about ``seconds`` of ``clock``.

    The single-thread rate uses ``time.process_time``, like the engine timings it is compared with, so a busy
    machine lowers neither side; rates of several threads or processes need wall time.
    """
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    count, t0 = 0, clock()
    while clock() - t0 < seconds:
        a @ b
        count += 1
    return 2.0 * n ** 3 * count / (clock() - t0) / 1e9


def _matmul_worker(threads: int, queue) -> None:
    torch.set_num_threads(threads)
    queue.put(_matmul_gflops())


def matmul_rates() -> dict:
    """Plain 2048^2 float32 matmul: 1 thread; 2 threads in one process; 2 single-thread processes at once."""
    out = {"1 thread (CPU time)": _matmul_gflops(clock=time.process_time)}
    torch.set_num_threads(2)
    out["1 process x 2 threads"] = _matmul_gflops()
    torch.set_num_threads(1)
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_matmul_worker, args=(1, queue)) for _ in range(2)]
    for p in procs:
        p.start()
    rates = [queue.get() for _ in procs]
    for p in procs:
        p.join()
    out["2 processes x 1 thread (sum)"] = sum(rates)
    return out


def fake_splits(dataset: str, replicas: int, n_train: int = 5000, val_fraction: float = 0.1):
    """Random data with the dataset's real shapes (features, validation and test rows)."""
    spec = load_spec(dataset)
    rest = spec.n_rows - n_train
    n_val = int(val_fraction * rest)
    gen = np.random.default_rng(0)
    d = spec.n_features

    def arr(*shape):
        return gen.standard_normal(shape).astype(np.float32)

    return [Split(arr(REAL_ROWS, d), arr(REAL_ROWS), arr(n_val, d), arr(n_val), arr(rest - n_val, d), arr(rest - n_val))
            for _ in range(replicas)], d


def _build(method: dict):
    """A fresh method object from its yaml (``conf/method/<name>.yaml``, its ``_target_``)."""
    from dfkd.settings import method_from_yaml

    return method_from_yaml(method)


#: Real rows handed to every benchmarked stack (the scarce-data methods use them; the others ignore them).
REAL_ROWS = 500


def _real(splits):
    from dfkd.data.real import RealRows

    return RealRows.from_splits(splits, REAL_ROWS, (splits[0].X_val.shape[1],))


def batched_flops_per_epoch(teacher, splits, seeds, variant) -> float:
    """Matmul FLOPs of one epoch of the batched engine (all replicas), counted by ``torch.utils.flop_counter``."""
    from torch.utils.flop_counter import FlopCounterMode

    method, alpha = _variant(variant)
    counter = FlopCounterMode(display=False)
    with counter:
        distill(teacher, splits, seeds, _build(method), alpha, StudentConfig(epochs=2), real=_real(splits))
    return counter.get_total_flops() / 2


def time_batched(teacher, splits, seeds, variant, epochs):
    """Student-epochs per CPU second of the batched engine (all replicas in one stack)."""
    method, alpha = _variant(variant)
    real = _real(splits)
    t0 = time.process_time()
    distill(teacher, splits, seeds, _build(method), alpha, StudentConfig(epochs=epochs), real=real)
    return len(seeds) * epochs / (time.process_time() - t0)


def time_alone(teacher, splits, seeds, variant, epochs):
    """Student-epochs per CPU second of the same engine run for one model at a time (R = 1, the first seed):
    the one-model form of a method the reference loop does not know."""
    one = type(teacher).from_params([teacher.replica_params(0)])
    return time_batched(one, splits[:1], seeds[:1], variant, epochs)


def phase_seconds(teacher, splits, seeds, variant, epochs: int) -> dict:
    """CPU seconds per epoch (all replicas) of a method's parts, the students trained as the engine does:
    ``start_epoch`` (e.g. building a soft-target transfer set), ``sample`` or ``student_gradient`` (the method's
    term), and for TSM its gradient matching (the same steps' term with ``gm`` off, subtracted)."""
    method, alpha = _variant(variant)
    meth = _build(method)
    times = {"start_epoch": 0.0, "method step": 0.0}
    calls = []  # each start_epoch call's seconds: a transfer-set build is one long call

    def timed(name, fn):
        def wrapper(*args, **kw):
            t0 = time.process_time()
            out = fn(*args, **kw)
            times[name] += time.process_time() - t0
            if name == "start_epoch":
                calls.append(time.process_time() - t0)
            return out
        return wrapper

    meth.start_epoch = timed("start_epoch", meth.start_epoch)
    step = "student_gradient" if meth.owns_loss else "sample"
    setattr(meth, step, timed("method step", getattr(meth, step)))
    t0 = time.process_time()
    distill(teacher, splits, seeds, meth, alpha, StudentConfig(epochs=epochs), real=_real(splits))
    times["whole epoch"] = time.process_time() - t0
    if getattr(meth, "gm", 0):
        gm, total = meth.gm, times["method step"]
        meth.gm, times["method step"] = 0.0, 0.0
        for _ in range(epochs * StudentConfig().steps_per_epoch):
            meth.student_gradient(alpha.default_batch_size(), 1.0)
        times["of which GM"], meth.gm = total - times["method step"], gm
        times["method step"] = total
    out = {k: v / epochs for k, v in times.items()}
    every = getattr(meth, "refresh_every", None)
    if every and calls:  # the protocol's cost per epoch: one build per `every` epochs, the rest as measured
        out["build"] = max(calls)
        out["protocol epoch"] = out["whole epoch"] - out["start_epoch"] + max(calls) / every
    return out


def time_synthetic(teacher, splits, seeds, variant, epochs):
    """Student-epochs per CPU second of the batched engine's synthetic data alone: each epoch's method update and
    every step's inputs and teacher labels (:func:`dfkd.engine.distill.synthetic_batch`), with the students left
    untrained, never validated and no bookkeeping. The engine cannot run faster than this with the same draws."""
    method, alpha = _variant(variant)
    cfg = StudentConfig(epochs=epochs)
    context = default_context(teacher)
    student = cfg.build(context.input_shape, rng.generators(seeds, "student_init"))
    noise = rng.generators(seeds, "noise")
    meth = _build(method)
    meth.bind(teacher.freeze(), student, seeds, "cpu", context)
    meth.set_noise(noise)
    m = alpha.default_batch_size()
    t0 = time.process_time()
    for epoch in range(epochs):
        a = alpha(epoch, epochs)
        if a > 0:
            meth.start_epoch(epoch, m)
        for _ in range(cfg.steps_per_epoch):
            teacher.predict(synthetic_batch(meth, context, noise, a, m, "cpu")[0])
    return len(seeds) * epochs / (time.process_time() - t0)


def time_loop(teacher, splits, seeds, variant, epochs):
    """Student-epochs per CPU second of the one-model reference loop (one seed at a time)."""
    method, alpha = _variant(variant)
    net = mlp_module(teacher.replica_params(0))
    params = {k: v for k, v in method.items() if k not in ("name", "_target_")}
    t0 = time.process_time()
    distill_reference(net, splits[0], seeds[0], method["name"], params, alpha, StudentConfig(epochs=epochs))
    return epochs / (time.process_time() - t0)


def compare(teacher, splits, seeds, variant, seconds: float, rounds: int = 3, one=None):
    """(best batched ep/s, best one-model ep/s) over ``rounds`` interleaved measurements of about
    ``seconds / rounds`` each: interleaving exposes both to the same load, and the best of a few
    (as ``timeit`` reports) is the least disturbed by other processes on a shared machine. ``one`` is the
    one-model timer: the reference loop (:func:`time_loop`, default) or the engine at R = 1 (:func:`time_alone`)."""
    one = one or time_loop
    probe = time.process_time()
    one(teacher, splits, seeds, variant, 2)
    per_epoch = max((time.process_time() - probe) / 2, 1e-4)
    one_epochs = max(3, int(seconds / rounds / per_epoch))
    ones, batched = [], []
    for _ in range(rounds):
        ones.append(one(teacher, splits, seeds, variant, one_epochs))
        batched.append(time_batched(teacher, splits, seeds, variant,
                                    max(3, int(seconds / rounds * ones[-1] / len(seeds) * 4))))
    return max(batched), max(ones)


def print_phases(runs, seconds: float) -> None:
    """Where the methods without a reference loop spend an epoch (CPU ms, all replicas of the stack)."""
    print()
    header = (f"{'dataset':10s} {'variant':30s} {'epoch ms':>9s} {'start_epoch':>12s} {'method step':>12s} "
              f"{'of which GM':>12s} {'one build':>10s} {'protocol ep':>12s}")
    print("where an epoch goes (CPU ms per epoch of the batched stack over the measured epochs; 'method step': "
          "sample() or, for TSM, its whole loss term;\n'one build': a soft-target transfer set; 'protocol ep': an "
          "epoch with one build per refresh_every epochs, as a 2000-epoch cell has them)")
    print(header)
    print("-" * len(header))
    for dataset, teacher, splits, seeds, variant in runs:
        probe = phase_seconds(teacher, splits, seeds, variant, 2)
        epochs = max(3, int(seconds / max(probe["whole epoch"], 1e-4)))
        ph = phase_seconds(teacher, splits, seeds, variant, epochs)
        opt = lambda key, width: f"{1e3 * ph[key]:{width}.1f}" if key in ph else f"{'-':>{width}s}"  # noqa: E731
        print(f"{dataset:10s} {variant:30s} {1e3 * ph['whole epoch']:9.1f} {1e3 * ph['start_epoch']:12.1f} "
              f"{1e3 * ph['method step']:12.1f} {opt('of which GM', 12)} {opt('build', 10)} "
              f"{opt('protocol epoch', 12)}", flush=True)


def bookkeeping_overhead(records_root: Path, data_dir: Path = Path("data")):
    """Share of a finished run's time spent on safety: records, resume checks, traces, checksums.

    Records carry ``bookkeeping_s`` (resume checks, trace and record writes) and the
    stack's compute time; checksum verification is timed here by verifying each
    dataset's files as often as the run's cells did.
    """
    import json

    from dfkd.data.fetch import ensure_dataset

    cells, bookkeeping, compute = {}, 0.0, 0.0
    for path in Path(records_root).rglob("seed*.json"):
        try:
            rec = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if "bookkeeping_s" not in rec:
            continue
        bookkeeping += rec["bookkeeping_s"]
        compute += rec["wall_time_s"] + rec.get("data_s", 0.0)
        cells.setdefault(rec["dataset"], set()).add(path.parent)
    if not cells:
        return None
    checks = 0.0
    for dataset, dirs in cells.items():
        t0 = time.perf_counter()
        ensure_dataset(load_spec(dataset), data_dir, progress=False)
        checks += (time.perf_counter() - t0) * len(dirs)
    return {"cells": sum(len(d) for d in cells.values()), "bookkeeping_s": bookkeeping, "checksum_s": checks,
            "compute_s": compute, "share": (bookkeeping + checks) / (compute + bookkeeping + checks)}


def estimate_protocol(datasets, replicas: int = 10, epochs: int = 2000, probe_epochs: int = 6, workers: int = 2):
    """Extrapolate the full Tables 3+4 protocol's wall time from short measured runs of every cell.

    Each (dataset, variant, student size) cell is timed for ``probe_epochs`` epochs with all
    replicas, scaled to ``epochs``, and the cells are scheduled longest-first on ``workers``
    single-thread processes, as the local launcher runs them. Teacher training is timed on
    the real data for a few epochs and scaled to the ~75 epochs teachers typically run.
    """
    cells = []
    for dataset in datasets:
        splits, d = fake_splits(dataset, replicas)
        seeds = list(range(1, replicas + 1))
        teacher = MLPStack.init(d, 500, 1, rng.generators(seeds, "bench"))
        for hidden in (25, 50):
            for variant in _table_variants(TABULAR_TABLE):
                method, alpha = _variant(variant)
                cfg = StudentConfig(hidden=hidden, epochs=probe_epochs)
                distill(teacher, splits, seeds, _build(method), alpha, StudentConfig(hidden=hidden, epochs=1))
                t0 = time.perf_counter()
                distill(teacher, splits, seeds, _build(method), alpha, cfg)
                cells.append((dataset, hidden, variant, (time.perf_counter() - t0) / probe_epochs * epochs))
        teacher_epoch = _teacher_epoch_seconds(dataset, replicas)
        cells.append((dataset, 500, "teachers", teacher_epoch * 75))
    loads = [0.0] * workers
    for *_, seconds in sorted(cells, key=lambda c: -c[-1]):
        loads[loads.index(min(loads))] += seconds
    return cells, max(loads)


def _teacher_epoch_seconds(dataset: str, replicas: int) -> float:
    from dfkd.engine.teacher import TeacherConfig, train_teachers

    import dataclasses

    splits, d = fake_splits(dataset, replicas)
    gen = np.random.default_rng(1)
    splits = [dataclasses.replace(s, X_train=gen.standard_normal((5000, d)).astype(np.float32),
                                  y_train=gen.standard_normal(5000).astype(np.float32)) for s in splits]  # 5000 rows
    t0 = time.perf_counter()
    train_teachers(splits, list(range(1, replicas + 1)), TeacherConfig(max_epochs=2))
    return (time.perf_counter() - t0) / 2
def _mnist_variant(name: str):
    """``(method yaml as a dict, alpha, m)`` of an MNIST variant. A decreasing alpha is timed at a constant 0.5
    with m = 50: the same work as any epoch of the schedule but its last (both batches made), without the
    degenerate a = 0 of a 1-epoch schedule."""
    method, alpha = _variant(name)
    if alpha.schedule != "constant":
        alpha = AlphaSchedule("constant", 0.5)
    return method, alpha, alpha.default_batch_size()


def _mnist_setup(replicas: int, n_val: int):
    import yaml

    from dfkd.cli import CONF_DIR
    from dfkd.data.split import Split
    from dfkd.data.context import Context
    from dfkd.data.sampler import make_sampler
    from dfkd.models.cnn import CNNStack

    gen = np.random.default_rng(0)
    shape = (1, 28, 28)
    split = Split(gen.random((8,) + shape, dtype=np.float32), gen.random(8, dtype=np.float32) * 9,
                  gen.random((n_val,) + shape, dtype=np.float32), gen.random(n_val, dtype=np.float32) * 9,
                  gen.random((10,) + shape, dtype=np.float32), gen.random(10, dtype=np.float32) * 9)
    mean, var = np.full((28, 28), 0.13, np.float32), np.full((28, 28), 0.09, np.float32)
    context = Context(shape, make_sampler("pixel", shape, mean=mean, var=var))
    teachers = CNNStack.init(10, rng.generators(list(range(replicas)), "bench")).freeze()
    student = yaml.safe_load((CONF_DIR / "student" / "cnn5.yaml").read_text())
    cfg = dict(arch="cnn", loss="logcosh", arch_params=student["params"], eval_chunk=int(student.get("eval_chunk", 200)))
    return split, context, teachers, cfg


def bench_mnist(variants, replicas: int = 5, epochs: int = 1, n_val: int = 5000) -> None:
    """Print student-epochs per CPU second, batched (R replicas) vs one model at a time."""
    split, context, teachers, cfg = _mnist_setup(replicas, n_val)
    print(f"\n# MNIST CNN (teacher f=10, student f=5), {replicas} replicas batched vs 1 at a time; "
          f"CPU s per student-epoch")
    header = f"{'variant':28s} {'batched ep/s':>13s} {'loop ep/s':>10s} {'ratio':>7s} {'CPU s/epoch/model':>18s}"
    print(header)
    print("-" * len(header))
    for variant in variants:
        spec, alpha, m = _mnist_variant(variant)

        def method():
            return _build(spec)

        def run(r):
            from dfkd.engine.distill import StudentConfig

            sub = teachers if r == replicas else type(teachers).from_params(
                [teachers.replica_params(0)], 10).freeze()
            t0 = time.process_time()
            distill(sub, [split] * r, list(range(r)), method(), alpha,
                    StudentConfig(epochs=epochs, batch_size=m, **cfg), context=context)
            return time.process_time() - t0

        batched = replicas * epochs / run(replicas)
        loop = epochs / run(1)
        print(f"{variant:28s} {batched:13.3f} {loop:10.3f} {batched / loop:6.2f}x {1 / batched:18.1f}", flush=True)


def protein_setup(replicas: int = 5, data_dir: str = "data"):
    """The eSol Table 6 setting: real data when installed (data dir or mirror), else random rows of its shapes.

    Returns ``(splits, seeds, teacher, context, source)``: a fitted SVR black box shared by all replicas.
    """
    from dfkd.data import load_dataset, make_split
    from dfkd.data.fetch import resolve_mirror
    from dfkd.errors import DfkdError
    from dfkd.data.context import Context
    from dfkd.data.sampler import make_sampler
    from dfkd.models.blackbox import fit_blackbox_teachers

    spec = load_spec("protein")
    opts = dict(spec.extra["split"])
    try:
        X, y = load_dataset(spec, data_dir=data_dir, mirror=resolve_mirror(None))
        source = "eSol data"
    except DfkdError:
        gen = np.random.default_rng(0)
        X, y = gen.dirichlet(np.ones(spec.n_features), spec.n_rows), gen.uniform(size=spec.n_rows)
        source = "random rows of eSol's shape (data not installed)"
    split = make_split(X, y, 1, **opts)
    seeds = list(range(1, replicas + 1))
    teacher, _ = fit_blackbox_teachers([split] * replicas, "sklearn.svm.SVR")
    Xtr = np.asarray(split.X_train, dtype=np.float64)
    context = Context(input_shape=(Xtr.shape[1],), sampler=make_sampler("simplex", (Xtr.shape[1],),
                      mean=Xtr.mean(0), std=Xtr.std(0)),
                      bounds=(torch.as_tensor(Xtr.min(0)).float(), torch.as_tensor(Xtr.max(0) + 0.01).float()))
    return [split] * replicas, seeds, teacher, context, source


def bench_protein(replicas: int = 5, seconds: float = 3.0, epochs: int = 1000, steps: int = 100) -> None:
    """Print DE solves per CPU second, batched vs one candidate per call, and a Table 6 CPU-time estimate.

    Times are CPU seconds of this single-threaded process (``time.process_time``), so they hold on a
    busy machine.
    """
    from dfkd.methods.de import DifferentialEvolution
    from dfkd.methods.random import Random
    from dfkd.models.rbf import RBFStack

    splits, seeds, teacher, context, source = protein_setup(replicas)
    print(f"\n# eSol (Table 6 setting, {source}): SVR black-box teacher, RBF-100 student, {replicas} replicas")
    student = RBFStack.init(context.input_shape[0], 100, rng.generators(seeds, "student_init"))
    rates = {}
    for batched in (True, False):
        method = DifferentialEvolution(batched=batched)
        method.bind(teacher, student, seeds, context=context)
        method.set_noise(rng.generators(seeds, "noise"))
        method.sample(5)  # warm-up
        count, t0 = 0, time.process_time()
        while time.process_time() - t0 < seconds:
            method.sample(5)
            count += replicas
        rates[batched] = count / (time.process_time() - t0)
    print(f"differential evolution, 5 rows x 25 generations, solves per CPU s: {rates[True]:6.1f} batched (one "
          f"teacher and one student call per generation), {rates[False]:6.1f} one candidate per call "
          f"({rates[True] / rates[False]:.1f}x)")
    per_epoch = {}
    cfg = dict(hidden=0, lr=1e-3, weight_decay=1e-6, epochs=1, steps_per_epoch=steps, arch="rbf",
               arch_params={"centres": 100})
    for name, method, alpha, m in (("de-0.5", DifferentialEvolution(), AlphaSchedule("constant", 0.5), 5),
                                   ("random-0", Random(), AlphaSchedule("constant", 0.0), 10)):
        t0 = time.process_time()
        distill(teacher, splits, seeds, method, alpha, StudentConfig(batch_size=m, **cfg), context=context)
        per_epoch[name] = time.process_time() - t0
    cpu = epochs * sum(per_epoch.values())
    print(f"Table 6 protocol ({epochs} epochs x {steps} steps, {replicas} runs per method, one stack per method): "
          f"one epoch costs de-0.5 {per_epoch['de-0.5']:.2f} CPU s, random-0 {per_epoch['random-0']:.3f} CPU s -> "
          f"estimated {cpu / 3600:.1f} CPU hours; wall with the 2 cells as parallel jobs on idle cores ~"
          f"{epochs * max(per_epoch.values()) / 3600:.1f} h", flush=True)


def ratio_ceiling(batched: float, loop: float, gflops: float, matmul_gflops: float) -> float:
    """The highest batched/loop ratio possible if the batched engine's matmuls ran at the plain matmul rate and
    everything else it does (elementwise passes, random draws, bookkeeping) cost nothing.

    ``batched``/``loop`` are model-epochs per second and ``gflops`` the batched engine's achieved matmul rate, so
    the batched epoch's matmul work alone takes ``gflops / matmul_gflops`` of its measured time.
    """
    return batched / loop * matmul_gflops / gflops


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dfkd.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="cpusmall,indoorloc")
    mnist_variants = _table_variants(MNIST_TABLE)
    tabular = list(dict.fromkeys(_table_variants(TABULAR_TABLE) + _benchmark_variants()))
    parser.add_argument("--variants", default=",".join(tabular),
                        help=f"tabular variants (default: {TABULAR_TABLE}'s and the benchmarks' columns)")
    parser.add_argument("--replicas", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=3.0, help="target time per measurement")
    parser.add_argument("--estimate", action="store_true",
                        help="also extrapolate the full Tables 3+4 protocol's wall time on 2 workers (a few minutes)")
    parser.add_argument("--overhead-records", default="results/quick/records",
                        help="records of a finished run (make quick) whose bookkeeping share to print")
    parser.add_argument("--mnist-variants", default=",".join(mnist_variants),
                        help=f"MNIST variants to time (default: {MNIST_TABLE}'s columns; 'none' to skip)")
    parser.add_argument("--mnist-replicas", type=int, default=5)
    parser.add_argument("--mnist-epochs", type=int, default=1)
    parser.add_argument("--protein", action=argparse.BooleanOptionalAction, default=True,
                        help="time eSol's differential evolution and estimate Table 6 (default: on)")
    args = parser.parse_args(argv)
    variants = args.variants.split(",")
    mnist = [] if args.mnist_variants == "none" else args.mnist_variants.split(",")
    if [v for v in mnist if v not in mnist_variants]:
        print(f"error: unknown MNIST variant in {mnist} (choose from {', '.join(mnist_variants)})", file=sys.stderr)
        return 2
    unknown = [v for v in variants if v not in tabular]
    if unknown or args.replicas < 1:
        print(f"error: unknown variant {unknown} (choose from {', '.join(tabular)}) or replicas < 1", file=sys.stderr)
        return 2
    tune_process(1)
    print(f"# dfkd bench: torch {torch.__version__}, {os.cpu_count()} CPU(s), 1 thread per process, "
          f"{args.replicas} replicas")
    rates = matmul_rates()
    for name, value in rates.items():
        print(f"plain matmul 2048x2048 fp32, {name:30s} {value:7.1f} GFLOP/s")
    base = rates["1 thread (CPU time)"]
    print()
    header = (f"{'dataset':10s} {'variant':30s} {'batched ep/s':>13s} {'loop ep/s':>10s} {'ratio':>7s} "
              f"{'GFLOP/s':>8s} {'% matmul':>9s} {'ceiling':>8s} {'data cap':>9s}")
    print(header)
    print("-" * len(header))
    new = []
    for dataset in ([] if args.datasets == "none" else args.datasets.split(",")):
        splits, d = fake_splits(dataset, args.replicas)
        seeds = list(range(1, args.replicas + 1))
        teacher = MLPStack.init(d, 500, 1, rng.generators(seeds, "bench"))
        for variant in variants:
            if not has_reference(_variant(variant)[0]["name"]):  # no reference loop: the engine at R = 1 instead
                batched, alone = compare(teacher, splits, seeds, variant, args.seconds, one=time_alone)
                print(f"{dataset:10s} {variant:30s} {batched:13.1f} {alone:10.1f} {batched / alone:6.1f}x  "
                      f"(one model: the engine at R = 1)", flush=True)
                new.append((dataset, teacher, splits, seeds, variant))
                continue
            batched, loop = compare(teacher, splits, seeds, variant, args.seconds)
            gflops = batched_flops_per_epoch(teacher, splits, seeds, variant) * batched / len(seeds) / 1e9
            synthetic = max(time_synthetic(teacher, splits, seeds, variant, max(3, int(2 * batched / len(seeds))))
                            for _ in range(3))
            print(f"{dataset:10s} {variant:30s} {batched:13.1f} {loop:10.1f} {batched / loop:6.1f}x "
                  f"{gflops:8.1f} {100 * gflops / base:8.0f}% {ratio_ceiling(batched, loop, gflops, base):7.1f}x "
                  f"{synthetic / loop:8.1f}x", flush=True)
    if new:
        print_phases(new, args.seconds)
    if mnist:
        bench_mnist(mnist, args.mnist_replicas, args.mnist_epochs)
    if args.protein:
        bench_protein(seconds=args.seconds)
    if args.estimate:
        offline = ["indoorloc", "pole", "mv", "puma32h", "compactiv", "cpusmall"]
        cells, wall = estimate_protocol(offline, args.replicas)
        total = sum(c[-1] for c in cells)
        print()
        for dataset in offline:
            part = sum(c[-1] for c in cells if c[0] == dataset)
            print(f"estimate {dataset:10s}: {part / 60:6.1f} min of single-thread work (teachers and 10 student cells)")
        print(f"estimate full Tables 3+4 protocol (6 offline datasets): {total / 60:.0f} min of single-thread work, "
              f"{wall / 60:.0f} min wall time on 2 single-thread workers")
    over = bookkeeping_overhead(Path(args.overhead_records))
    print()
    if over is None:
        print(f"bookkeeping overhead: no records with timings under {args.overhead_records} (run `make quick` first)")
    else:
        print(f"bookkeeping overhead on {over['cells']} cells under {args.overhead_records}: "
              f"{100 * over['share']:.2f} % of the time (records, resume checks and traces "
              f"{over['bookkeeping_s']:.2f} s, checksums {over['checksum_s']:.2f} s, training {over['compute_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
