"""Mid-run checkpoints: a stack interrupted and resumed gives exactly the numbers of an uninterrupted run."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from conftest import tiny_settings, REPO_ROOT, toy_split
from dfkd.cli import CONF_DIR
from dfkd.data.split import Split
from dfkd.core import rng
from dfkd.engine.alpha import AlphaSchedule
from dfkd.engine.checkpoint import Checkpoint
from dfkd.engine.distill import StudentConfig, distill
from dfkd.data.context import Context
from dfkd.methods.de import DifferentialEvolution
from dfkd.methods.direct import Direct
from dfkd.methods.generator import Generator
from dfkd.methods.random import Random
from dfkd.data.sampler import make_sampler
from dfkd.models.blackbox import BlackBoxTeacher
from dfkd.models.cnn import CNNStack
from dfkd.models.mlp import MLPStack
from dfkd import store
from dfkd.cell import cell_hash, run_cell
from dfkd.settings import settings_from_dict

SEEDS = [1, 2, 3]
EVERY_EPOCH = 1e-9  # checkpoint_every_s so small that every epoch boundary saves


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: tiny tensors run faster on one thread


class Stop(Exception):
    """Stands in for a kill: raised from the progress callback after an epoch."""


def stop_at(epoch_to_stop):
    def progress(epoch, best):
        if epoch == epoch_to_stop:
            raise Stop
    return progress


def same_run(a, b):
    """Two distill outputs are identical: every metric but wall time, every trace, the final and best students."""
    (res_a, tr_a, st_a, best_a), (res_b, tr_b, st_b, best_b) = a, b
    strip = lambda res: [{k: v for k, v in r.items() if k != "wall_time_s"} for r in res]  # noqa: E731
    assert strip(res_a) == strip(res_b)
    assert tr_a.keys() == tr_b.keys()
    for k in tr_a:
        torch.testing.assert_close(tr_a[k], tr_b[k], rtol=0, atol=0, equal_nan=True)
    assert torch.equal(st_a.flat, st_b.flat) and torch.equal(best_a, best_b)


def interrupted_then_resumed(make_run, path, stops):
    """Run with a checkpoint every epoch, stopping after each epoch in ``stops``, then to the end."""
    resumed_at = []
    for k in stops:
        with pytest.raises(Stop):
            make_run(Checkpoint(path, EVERY_EPOCH, key="k", log=lambda *_: None), stop_at(k))
        assert path.exists()
    lines = []
    ckpt = Checkpoint(path, EVERY_EPOCH, key="k", log=lines.append)
    out = make_run(ckpt, None)
    resumed_at.append(ckpt.resumed_epoch)
    return out, resumed_at, lines


# -- the engine: each method, interrupted and resumed -------------------------------------------------------
MLP_CASES = {
    "direct/decreasing": (lambda: Direct(), AlphaSchedule("decreasing")),
    "generator/decreasing": (lambda: Generator(hidden=16), AlphaSchedule("decreasing")),
    "random/0": (lambda: Random(), AlphaSchedule("constant", 0.0)),
}


@pytest.mark.parametrize("case", list(MLP_CASES))
def test_mlp_stack_resumed_from_checkpoints_equals_an_uninterrupted_run(case, tmp_path):
    make_method, alpha = MLP_CASES[case]
    splits = [toy_split(s) for s in SEEDS]
    cfg = StudentConfig(hidden=5, epochs=8, steps_per_epoch=3)

    def make_run(checkpoint=None, progress=None):
        teacher = MLPStack.init(6, 20, 1, rng.generators(SEEDS, "t"))
        return distill(teacher, splits, SEEDS, make_method(), alpha, cfg, progress=progress, checkpoint=checkpoint)

    clean = make_run()
    resumed, at, lines = interrupted_then_resumed(make_run, tmp_path / "ck.pt", stops=[2, 5])
    same_run(clean, resumed)
    assert at == [6] and lines == [lines[0]] and lines[0].startswith("resuming seeds [1, 2, 3] from epoch 6")


class Linear:
    """A black-box regressor: predict only."""

    def __init__(self, w):
        self.w = np.asarray(w, dtype=np.float64)

    def predict(self, X):
        return np.asarray(X) @ self.w


def test_rbf_student_with_de_and_a_black_box_teacher_resumes_exactly(tmp_path):
    seeds = [1, 2]
    splits = [toy_split(s, d=4, n_val=20, n_test=20) for s in seeds]
    context = Context((4,), bounds=(torch.full((4,), -0.5), torch.full((4,), 1.5)))
    cfg = StudentConfig(epochs=5, steps_per_epoch=2, batch_size=5, arch="rbf", arch_params={"centres": 4})
    teachers, methods = [], []

    def make_run(checkpoint=None, progress=None):
        teachers.append(BlackBoxTeacher([Linear([0.3, -0.2, 0.5, 0.1])] * 2, d_in=4))
        methods.append(DifferentialEvolution(generations=3))
        return distill(teachers[-1], splits, seeds, methods[-1], AlphaSchedule("constant", 0.5), cfg,
                       progress=progress, context=context, checkpoint=checkpoint)

    clean = make_run()
    clean_queries, clean_generations = teachers[-1].queries, methods[-1].generations_run
    resumed, at, _ = interrupted_then_resumed(make_run, tmp_path / "ck.pt", stops=[1])
    same_run(clean, resumed)
    assert at == [2]
    assert teachers[-1].queries == clean_queries and methods[-1].generations_run == clean_generations


def tiny_images(seed):
    """A tiny MNIST-shaped split, its pixel sampler and a 4-epoch CNN student config."""
    gen = np.random.default_rng(seed)
    images = lambda n: gen.uniform(0, 1, (n, 1, 28, 28)).astype(np.float32)  # noqa: E731
    split = Split(images(4), np.zeros(4, np.float32), images(8), gen.uniform(0, 9, 8).astype(np.float32),
                  images(8), gen.uniform(0, 9, 8).astype(np.float32))
    shape = (1, 28, 28)
    context = Context(shape, make_sampler("pixel", shape, mean=np.full(shape, 0.13), var=np.full(shape, 0.09)))
    cfg = StudentConfig(epochs=4, steps_per_epoch=2, batch_size=3, arch="cnn", loss="logcosh",
                        arch_params={"filters": 1, "hidden": [8, 4, 2]})
    return split, context, cfg


def test_cnn_student_with_dropout_and_the_image_generator_resumes_exactly(tmp_path):
    seeds = [1, 2]
    split, context, cfg = tiny_images(0)
    objective = {"disagreement": 1e-6, "loss": "logcosh", "l1": 1e-6, "target": 1.0}

    def make_run(checkpoint=None, progress=None):
        teacher = CNNStack.init(1, rng.generators(seeds, "t"), hidden=(8, 4, 2))
        method = Generator(arch="conv", latent=4, hidden=2, beta=0.0, objective=objective)
        return distill(teacher, [split] * 2, seeds, method, AlphaSchedule("decreasing"), cfg, progress=progress,
                       context=context, keep_samples=2, checkpoint=checkpoint)

    clean = make_run()
    resumed, at, _ = interrupted_then_resumed(make_run, tmp_path / "ck.pt", stops=[1])
    same_run(clean, resumed)
    assert at == [2]


def test_damaged_foreign_or_unfitting_checkpoints_are_reported_and_ignored(tmp_path):
    splits = [toy_split(s) for s in SEEDS]

    def make_run(checkpoint=None, progress=None, seeds=SEEDS, hidden=5):
        teacher = MLPStack.init(6, 20, 1, rng.generators(seeds, "t"))
        return distill(teacher, splits[:len(seeds)], seeds, Direct(), AlphaSchedule("decreasing"),
                       StudentConfig(hidden=hidden, epochs=4, steps_per_epoch=2), progress=progress,
                       checkpoint=checkpoint)

    clean = make_run()
    path = tmp_path / "ck.pt"
    with pytest.raises(Stop):
        make_run(Checkpoint(path, EVERY_EPOCH, key="k", log=lambda *_: None), stop_at(1))
    good = path.read_bytes()
    for bad, expect in [(good[: len(good) // 2], "is damaged or unreadable"), (b"not a checkpoint", "damaged"),
                        (None, "belongs to other seeds or settings")]:
        if bad is not None:
            path.write_bytes(bad)
        lines = []
        out = make_run(Checkpoint(path, 0, key="k" if bad is not None else "other", log=lines.append))
        same_run(clean, out)
        assert len(lines) == 1 and expect in lines[0] and "\n" not in lines[0], lines
        path.write_bytes(good)
    # a file of the same key that does not fit the stack (other student width) is rejected, not half-loaded
    lines = []
    ckpt = Checkpoint(path, 0, key="k", log=lines.append, commit="abc123")
    out = make_run(ckpt, hidden=4)
    assert len(lines) == 1 and "does not fit this stack" in lines[0] and ckpt.resumed_epoch is None
    # ... and kept aside, byte for byte, so that the fresh run's saves cannot overwrite the hours it holds
    aside = path.with_name(path.name + ".rejected")
    assert f"kept as {aside.name}" in lines[0] and aside.read_bytes() == good and not path.exists()
    aside.replace(path)
    cfg4 = StudentConfig(hidden=4, epochs=4, steps_per_epoch=2)
    teacher = MLPStack.init(6, 20, 1, rng.generators(SEEDS, "t"))
    same_run(distill(teacher, splits, SEEDS, Direct(), AlphaSchedule("decreasing"), cfg4), out)


def test_resumes_keep_which_commit_trained_which_epochs(tmp_path):
    path = tmp_path / "ck.pt"
    first = Checkpoint(path, 0, key="k", commit="aaa")
    assert first.segments == [{"from_epoch": 0, "git_commit": "aaa"}]
    first.save({"epoch": 4})
    lines = []
    second = Checkpoint(path, 0, key="k", log=lines.append, commit="bbb")
    second.resumed(second.load(), [1, 2])
    assert second.segments == [{"from_epoch": 0, "git_commit": "aaa"}, {"from_epoch": 4, "git_commit": "bbb"}]
    assert len(lines) == 1 and "written by commit aaa; now bbb" in lines[0]
    second.save({"epoch": 9})
    third = Checkpoint(path, 0, key="k", log=lines.append, commit="bbb")
    third.resumed(third.load(), [1, 2])
    assert [s["from_epoch"] for s in third.segments] == [0, 4, 9] and "now bbb" not in lines[-1]
    # a file from before segments were kept: its earlier code is unknown
    torch.save({k: v for k, v in torch.load(path, weights_only=True).items() if k != "segments"}, path)
    old = Checkpoint(path, 0, key="k", log=lines.append, commit="ccc")
    old.resumed(old.load(), [1, 2])
    assert old.segments == [{"from_epoch": 0, "git_commit": "unknown"}, {"from_epoch": 9, "git_commit": "ccc"}]


def test_checkpoint_timing_follows_every_s(tmp_path):
    ckpt = Checkpoint(tmp_path / "ck.pt", 0)
    assert not ckpt.due()
    ckpt = Checkpoint(tmp_path / "ck.pt", 3600)
    assert not ckpt.due()
    ckpt = Checkpoint(tmp_path / "ck.pt", EVERY_EPOCH)
    time.sleep(0.001)
    assert ckpt.due()
    ckpt.save({"epoch": 1})
    assert ckpt.saves == 1 and ckpt.seconds > 0 and torch.load(ckpt.path, weights_only=True)["epoch"] == 1


# -- the runner: file name, resume line, removal, hashes ----------------------------------------------------
TINY = ["dataset=cpusmall", "seeds=2", "epochs=6", "steps_per_epoch=2", "teacher.max_epochs=3", "progress=false",
        "threads=1"]
VOLATILE = {"created", "wall_time_s", "stack_wall_time_s", "bookkeeping_s", "data_s", "host", "config", "git_commit",
            "training_segments"}


def settings_for(tmp: Path, mirror, extra=()):
    return tiny_settings(tmp, mirror, TINY + list(extra))


def stable(path) -> dict:
    rec = json.loads(Path(path).read_text())
    return {k: v for k, v in rec.items() if k not in VOLATILE}


def killed_after_checkpoints(monkeypatch, settings, n_saves: int):
    """Run a cell that 'dies' right after its n-th checkpoint is written."""
    real_save = Checkpoint.save

    def save(self, state):
        real_save(self, state)
        if self.saves == n_saves:
            raise Stop
    with monkeypatch.context() as m:
        m.setattr(Checkpoint, "save", save)
        with pytest.raises(Stop):
            run_cell(settings, log=lambda *_: None)


@pytest.fixture(scope="module")
def clean_cell(tmp_path_factory, data_mirror):
    """An uninterrupted generator/decreasing cell (its teachers are copied by the tests that resume it)."""
    tmp = tmp_path_factory.mktemp("clean")
    summary = run_cell(settings_for(tmp, data_mirror, ["method=generator", "checkpoint_every_s=0"]),
                       log=lambda *_: None)
    return tmp, summary


def test_runner_resumes_a_killed_stack_to_identical_records_and_removes_the_checkpoint(clean_cell, data_mirror,
                                                                                       tmp_path, monkeypatch):
    import shutil

    clean, summary = clean_cell
    shutil.copytree(clean / "teachers", tmp_path / "teachers")
    s = settings_for(tmp_path, data_mirror, ["method=generator", f"checkpoint_every_s={EVERY_EPOCH}"])
    killed_after_checkpoints(monkeypatch, s, n_saves=3)
    cell = tmp_path / "results/records/cpusmall/mlp50/generator-decreasing"
    ckpts = list(cell.glob(".ckpt-*.pt"))
    assert len(ckpts) == 1 and not list(cell.glob("seed*.json"))
    lines = []
    done = run_cell(s, log=lines.append)
    assert done["ran"] == [1, 2]
    assert sum("resuming seeds [1, 2] from epoch 3 (checkpoint of " in line for line in lines) == 1
    assert "resuming seeds [1, 2] from epoch 3" in (cell / "run.log").read_text()
    for a, b in zip(summary["records"], done["records"]):
        assert stable(a) == stable(b)
        ta, tb = np.load(Path(a).with_suffix(".trace.npz")), np.load(Path(b).with_suffix(".trace.npz"))
        assert all(np.array_equal(ta[k], tb[k], equal_nan=True) for k in ta.files)
    assert not list(cell.glob(".ckpt-*")) and not list(cell.glob(".stack-*"))
    rec = json.loads(Path(done["records"][0]).read_text())
    assert rec["bookkeeping_s"] > 0 and rec["config"]["checkpoint_every_s"] == EVERY_EPOCH
    assert rec["training_segments"] == [{"from_epoch": 0, "git_commit": rec["git_commit"]},
                                        {"from_epoch": 3, "git_commit": rec["git_commit"]}]
    assert "training_segments" not in json.loads(Path(summary["records"][0]).read_text())  # one run: no segments


def test_runner_ignores_a_damaged_checkpoint_and_one_of_other_seeds(clean_cell, data_mirror, tmp_path,
                                                                    monkeypatch):
    import shutil

    clean, summary = clean_cell
    shutil.copytree(clean / "teachers", tmp_path / "teachers")
    s = settings_for(tmp_path, data_mirror, ["method=generator", f"checkpoint_every_s={EVERY_EPOCH}"])
    cell = tmp_path / "results/records/cpusmall/mlp50/generator-decreasing"
    # seed 1 alone left a checkpoint: the stack of seeds 1 and 2 does not use it, and leaves it alone
    # (a parallel worker may own it)
    killed_after_checkpoints(monkeypatch, settings_for(tmp_path, data_mirror, [
        "method=generator", "seeds=[1]", f"checkpoint_every_s={EVERY_EPOCH}"]), n_saves=2)
    (other,) = cell.glob(".ckpt-*.pt")
    # the stack of seeds 1 and 2 leaves a checkpoint, which is then damaged
    killed_after_checkpoints(monkeypatch, s, n_saves=2)
    (mine,) = set(cell.glob(".ckpt-*.pt")) - {other}
    mine.write_bytes(mine.read_bytes()[:100])
    lines = []
    done = run_cell(s, log=lines.append)
    assert not any("resuming" in line for line in lines)
    damaged = [line for line in lines if "damaged or unreadable" in line]
    assert len(damaged) == 1 and mine.name in damaged[0]
    for a, b in zip(summary["records"], done["records"]):
        assert stable(a) == stable(b)
    # the damaged file was replaced and removed; seed 1's own checkpoint is spent now that seed 1 has finished
    assert not mine.exists() and not other.exists()
    assert sum(f"removed spent checkpoint {other.name}: its seeds [1] have finished" in line for line in lines) == 1


def test_a_checkpoint_with_an_unfinished_seed_is_kept_and_removed_once_all_have_finished(clean_cell, data_mirror,
                                                                                       tmp_path, monkeypatch):
    import shutil

    clean, _ = clean_cell
    shutil.copytree(clean / "teachers", tmp_path / "teachers")
    cell = tmp_path / "results/records/cpusmall/mlp50/generator-decreasing"
    # a stack of seeds 1 and 2 stopped mid-run (as when the seeds are later regrouped, or a worker is still on it)
    killed_after_checkpoints(monkeypatch, settings_for(tmp_path, data_mirror, [
        "method=generator", f"checkpoint_every_s={EVERY_EPOCH}"]), n_saves=2)
    (pair,) = cell.glob(".ckpt-*.pt")
    run_cell(settings_for(tmp_path, data_mirror, ["method=generator", "seeds=[1]", "checkpoint_every_s=0"]),
             log=lambda *_: None)
    assert pair.exists()  # seed 2 has not finished: the file may still be resumed from
    lines = []
    run_cell(settings_for(tmp_path, data_mirror, ["method=generator", "seeds=[2]", "checkpoint_every_s=0"]),
             log=lines.append)
    assert not pair.exists() and any("removed spent checkpoint" in line for line in lines)
    assert sorted(p.name for p in cell.glob("seed*.json")) == ["seed01.json", "seed02.json"]


def test_a_committed_stack_takes_its_checkpoint_with_it(clean_cell, data_mirror, tmp_path):
    import shutil

    clean, summary = clean_cell
    shutil.copytree(clean / "results", tmp_path / "results")
    s = settings_for(tmp_path, data_mirror, ["method=generator"])
    cell = tmp_path / "results/records/cpusmall/mlp50/generator-decreasing"
    recs = [json.loads(Path(p).read_text()) for p in summary["records"]]
    key = store.stack_key([1, 2], {r["seed"]: r["config_hash"] for r in recs})
    # killed after the commit point, before the checkpoint was removed
    (cell / f".stack-{key}-1.json").write_text(json.dumps({"schema": 1, "records": recs}))
    (cell / f".ckpt-{key}.pt").write_bytes(b"left over")
    (cell / "seed02.json").unlink()
    assert run_cell(s, log=lambda *_: None)["ran"] == []
    assert (cell / "seed02.json").exists() and not list(cell.glob(".ckpt-*")) and not list(cell.glob(".stack-*"))


def test_checkpoint_setting_leaves_the_config_hash_of_finished_records_unchanged(tmp_path):
    ref = REPO_ROOT / "results/reference/records/pole/mlp50/direct-decreasing/seed01.json"
    rec = json.loads(ref.read_text())  # written before the setting existed
    for every in (None, 0, 7.5):
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            cfg = compose("config", overrides=["dataset=pole", "student=mlp50", "method=direct", "alpha=decreasing",
                                               f"results_dir={tmp_path}"]
                          + ([] if every is None else [f"checkpoint_every_s={every}"]))
        cfg = OmegaConf.to_container(cfg, resolve=True)
        if every is None:
            del cfg["checkpoint_every_s"]  # a config of before the setting: the default
        settings = settings_from_dict(cfg)
        assert settings.checkpoint_every_s == (300 if every is None else every)
        assert cell_hash(settings, 1, rec["batch_size"]) == rec["config_hash"]


def test_bad_checkpoint_setting_is_one_line(tmp_path, data_mirror):
    from dfkd.errors import ConfigError

    with pytest.raises(ConfigError, match="checkpoint_every_s must be a finite number >= 0"):
        settings_for(tmp_path, data_mirror, ["checkpoint_every_s=-1"])


# -- a real kill ------------------------------------------------------------------------------------------
def cli(tmp: Path, mirror, *extra) -> subprocess.Popen:
    env = dict(os.environ, DFKD_DATA_MIRROR=str(mirror))
    cmd = [sys.executable, "-m", "dfkd.distill", "dataset=cpusmall", "student=mlp25", "method=direct", "seeds=2",
           "epochs=400", "steps_per_epoch=2", "teacher.max_epochs=3", "threads=1", "progress=false",
           f"results_dir={tmp / 'results'}", f"teacher_dir={tmp / 'teachers'}", f"data_dir={tmp / 'data'}", *extra]
    return subprocess.Popen(cmd, env=env, cwd=tmp, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True, text=True)


@pytest.mark.slow
def test_a_sigkilled_cli_run_resumes_from_its_checkpoint(tmp_path, data_mirror):
    procs = []

    def start(tmp, every):
        procs.append(cli(tmp, data_mirror, f"checkpoint_every_s={every}"))
        return procs[-1]
    try:
        clean, crashy = tmp_path / "clean", tmp_path / "crashy"
        clean.mkdir()
        crashy.mkdir()
        proc = start(clean, 0)
        assert proc.wait(timeout=900) == 0, proc.stdout.read()
        proc = start(crashy, 0.05)
        cell = crashy / "results/records/cpusmall/mlp25/direct-decreasing"
        while not list(cell.glob(".ckpt-*.pt")) and proc.poll() is None:
            time.sleep(0.01)
        assert proc.poll() is None, "the run ended before it could be killed: raise epochs"
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        assert not list(cell.glob("seed*.json"))
        proc = start(crashy, 0.05)
        out, _ = proc.communicate(timeout=900)
        assert proc.returncode == 0, out
        assert "resuming seeds [1, 2] from epoch " in out
        for seed in (1, 2):
            name = f"records/cpusmall/mlp25/direct-decreasing/seed{seed:02d}.json"
            assert stable(clean / "results" / name) == stable(crashy / "results" / name)
        assert not list(cell.glob(".ckpt-*"))
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()


def test_a_bug_while_restoring_a_checkpoint_is_raised_not_swallowed(tmp_path, monkeypatch):
    """Only what a file of another shape or layout raises means 'start over'; any other failure while restoring
    (a bug) propagates, so hours of training never restart silently."""
    splits = [toy_split(s) for s in SEEDS]

    def make_run(checkpoint=None, progress=None):
        teacher = MLPStack.init(6, 20, 1, rng.generators(SEEDS, "t"))
        return distill(teacher, splits, SEEDS, Direct(), AlphaSchedule("decreasing"),
                       StudentConfig(hidden=5, epochs=4, steps_per_epoch=2), progress=progress,
                       checkpoint=checkpoint)

    path = tmp_path / "ck.pt"
    with pytest.raises(Stop):
        make_run(Checkpoint(path, EVERY_EPOCH, key="k", log=lambda *_: None), stop_at(1))
    good = path.read_bytes()

    def broken(self, state):
        raise ZeroDivisionError("a bug in a method's load_state_dict")
    monkeypatch.setattr(Direct, "load_state_dict", broken)
    with pytest.raises(ZeroDivisionError):
        make_run(Checkpoint(path, 0, key="k", log=lambda *_: None))
    assert path.read_bytes() == good  # untouched: fix the bug and rerun to resume


def test_a_teacher_with_dropout_on_at_labelling_resumes_exactly(tmp_path):
    """teacher.label_dropout=true (issue 15): the teacher's mask streams travel in the checkpoint."""
    from dfkd.models.cnn import LabelDropoutCNN

    seeds = [1, 2]
    split, context, cfg = tiny_images(1)
    params = CNNStack.init(1, rng.generators([0], "t"), hidden=(8, 4, 2), dropout=(0.5, 0.25, 0.0)).replica_params(0)

    def make_run(checkpoint=None, progress=None):
        teacher = LabelDropoutCNN.from_params([params] * 2, 1, hidden=(8, 4, 2),
                                              generators=rng.generators(seeds, "teacher_label_dropout"))
        return distill(teacher, [split] * 2, seeds, Random(), AlphaSchedule("constant", 0.0), cfg,
                       progress=progress, context=context, checkpoint=checkpoint)

    clean = make_run()
    resumed, at, _ = interrupted_then_resumed(make_run, tmp_path / "ck.pt", stops=[2])
    same_run(clean, resumed)
    assert at == [3]


def _retrain_elsewhere(teacher_dir: Path) -> int:
    """Stand in for teachers retrained on another machine: the same files and keys, other networks."""
    n = 0
    for path in sorted(teacher_dir.rglob("seed*.pt")):
        blob = torch.load(path, weights_only=True)
        params = {k: v + 1e-3 for k, v in blob["params"].items()}
        meta = dict(blob["meta"], test_rmse=blob["meta"]["test_rmse"] * 1.001)
        torch.save({"params": params, "meta": meta}, path)
        n += 1
    return n


def test_a_checkpoint_trained_against_other_teachers_is_kept_aside_and_the_stack_starts_over(
        clean_cell, data_mirror, tmp_path, monkeypatch):
    import shutil

    clean, summary = clean_cell
    shutil.copytree(clean / "teachers", tmp_path / "teachers")
    s = settings_for(tmp_path, data_mirror, ["method=generator", f"checkpoint_every_s={EVERY_EPOCH}"])
    killed_after_checkpoints(monkeypatch, s, n_saves=3)
    cell = tmp_path / "results/records/cpusmall/mlp50/generator-decreasing"
    (ckpt,) = cell.glob(".ckpt-*.pt")
    saved = torch.load(ckpt, weights_only=True)["teachers"]
    assert len(saved) == 2 and all(0 < v < 10 for v in saved)  # the two replicas' teacher test RMSE
    assert _retrain_elsewhere(tmp_path / "teachers") >= 2
    lines = []
    done = run_cell(s, log=lines.append)
    assert done["ran"] == [1, 2] and not any("resuming" in line for line in lines)
    other = [line for line in lines if "was trained against other teachers" in line]
    assert len(other) == 1 and f"{saved[0]:.6g}" in other[0] and "put back the teacher cache" in other[0]
    assert (cell / (ckpt.name + ".rejected")).is_file()  # the hours it holds are not overwritten
    rec = json.loads(Path(done["records"][0]).read_text())
    assert "training_segments" not in rec and rec["teacher_test_rmse"] == pytest.approx(saved[0] * 1.001)


def test_a_checkpoint_from_before_teacher_fingerprints_still_resumes(clean_cell, data_mirror, tmp_path,
                                                                     monkeypatch):
    import shutil

    clean, summary = clean_cell
    shutil.copytree(clean / "teachers", tmp_path / "teachers")
    s = settings_for(tmp_path, data_mirror, ["method=generator", f"checkpoint_every_s={EVERY_EPOCH}"])
    killed_after_checkpoints(monkeypatch, s, n_saves=3)
    (ckpt,) = (tmp_path / "results/records/cpusmall/mlp50/generator-decreasing").glob(".ckpt-*.pt")
    state = torch.load(ckpt, weights_only=True)
    del state["teachers"]
    torch.save(state, ckpt)
    lines = []
    done = run_cell(s, log=lines.append)
    assert sum("resuming seeds [1, 2] from epoch 3" in line for line in lines) == 1
    for a, b in zip(summary["records"], done["records"]):
        assert stable(a) == stable(b)
