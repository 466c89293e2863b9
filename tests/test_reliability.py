"""Crash safety, determinism, the divergence guard and failures a user can cause mid-sweep."""

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import tiny_settings, toy_split
from dfkd.core import rng
from dfkd.engine.alpha import AlphaSchedule
from dfkd.engine.distill import StudentConfig, distill
from dfkd.errors import ConfigError
from dfkd.methods.direct import Direct
from dfkd.models.mlp import MLPStack
from dfkd.cell import run_cell

TINY = ["dataset=cpusmall", "seeds=2", "epochs=4", "steps_per_epoch=2", "teacher.max_epochs=3", "progress=false"]
VOLATILE = {"created", "wall_time_s", "stack_wall_time_s", "bookkeeping_s", "data_s", "host", "config", "git_commit"}


def settings(tmp: Path, mirror, extra=()):
    return tiny_settings(tmp, mirror, TINY + list(extra))


def stable(path: Path) -> dict:
    rec = json.loads(Path(path).read_text())
    return {k: v for k, v in rec.items() if k not in VOLATILE}


def test_same_config_and_seed_give_identical_numbers(tmp_path, data_mirror):
    a = run_cell(settings(tmp_path / "a", data_mirror, ["method=generator", "alpha=decreasing"]), log=lambda *_: None)
    b = run_cell(settings(tmp_path / "b", data_mirror, ["method=generator", "alpha=decreasing"]), log=lambda *_: None)
    for pa, pb in zip(a["records"], b["records"]):
        assert stable(pa) == stable(pb)
    rec = json.loads(Path(a["records"][0]).read_text())
    # everything needed to rerun it
    assert rec["config"]["method"]["_target_"] == "dfkd.methods.generator.Generator" and rec["config"]["seeds"] == 2
    assert rec["seed"] == 1 and rec["git_commit"] and rec["torch_version"] == torch.__version__
    assert rec["data_sha256"][0][1] == "5b3bc31184b4b0c546d58fd2b62e103f21ad787f66b41d31faa45be10be308e7"


def test_diverged_replica_is_failed_and_the_others_go_on():
    seeds = [1, 2, 3]
    splits = [toy_split(s) for s in seeds]
    teacher = MLPStack.init(6, 20, 1, rng.generators(seeds, "t"))
    with torch.no_grad():
        teacher.w2[1].fill_(float("inf"))  # replica 1's teacher answers inf
    results, traces, _, _ = distill(teacher, splits, seeds, Direct(), AlphaSchedule("decreasing"),
                                    StudentConfig(hidden=4, epochs=5, steps_per_epoch=2))
    assert results[1]["failure_reason"].startswith("non-finite loss at epoch 0")
    assert results[0]["failure_reason"] is None and results[2]["failure_reason"] is None
    assert np.isfinite(results[0]["test_rmse"]) and np.isfinite(results[2]["test_rmse"])
    assert torch.isfinite(traces["val_rmse"][:, [0, 2]]).all()


def test_unwritable_results_folder_fails_before_training(tmp_path, data_mirror):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    s = settings(tmp_path, data_mirror)
    s.results_dir = blocker / "results"
    with pytest.raises(ConfigError, match="cannot write results to"):
        run_cell(s, log=lambda *_: None)
    assert not (tmp_path / "teachers").exists()  # nothing was trained


def test_a_committed_stack_is_restored_not_recomputed(tmp_path, data_mirror):
    s = settings(tmp_path, data_mirror, ["method=random", "alpha=zero"])
    done = run_cell(s, log=lambda *_: None)
    cell = Path(done["records"][0]).parent
    recs = [json.loads(Path(p).read_text()) for p in done["records"]]
    # an interruption after the commit point: the stack file exists, one record is missing
    (cell / ".stack-abc-1.json").write_text(json.dumps({"schema": 1, "records": recs}))
    Path(done["records"][1]).unlink()
    lines = []
    again = run_cell(s, log=lines.append)
    assert again["ran"] == [] and any("restored the record of seed 2" in line for line in lines)
    assert json.loads(Path(done["records"][1]).read_text()) == recs[1]
    assert not list(cell.glob(".stack-*.json"))
    # an uncommitted (torn) stack file is discarded and its seeds are redone
    (cell / ".stack-def-2.json").write_text('{"schema": 1, "rec')
    Path(done["records"][0]).unlink()
    assert run_cell(s, log=lambda *_: None)["ran"] == [1]
    assert (cell / "run.log").read_text().count("distilling seeds") == 2


# -- SIGKILL at random moments, then resume ---------------------------------------------------------
SWEEP = ["-m", "dataset=cpusmall,mv", "variant=random-0,direct-decreasing", "student=mlp25", "seeds=3", "epochs=60",
         "steps_per_epoch=5", "teacher.max_epochs=8", "progress=false", "experiment_name=table3"]


def sweep(tmp: Path, mirror) -> subprocess.Popen:
    env = dict(os.environ, DFKD_DATA_MIRROR=str(mirror))
    cmd = [sys.executable, "-m", "dfkd.distill", *SWEEP, f"results_dir={tmp / 'results'}",
           f"teacher_dir={tmp / 'teachers'}", f"data_dir={tmp / 'data'}"]
    return subprocess.Popen(cmd, env=env, cwd=tmp, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)


def report(tmp: Path) -> str:
    out = tmp / "tables"
    subprocess.run([sys.executable, "-m", "dfkd.report", "--records", str(tmp / "results" / "records"), "--out",
                    str(out), "--tables", "table3"], check=True, capture_output=True, timeout=120)
    return (out / "table3.csv").read_text()


def snapshot(tmp: Path) -> dict:
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in (tmp / "results" / "records").rglob("seed*.json")}


@pytest.mark.slow
def test_sweep_killed_at_random_moments_resumes_to_the_same_tables(tmp_path, data_mirror):
    clean = tmp_path / "clean"
    clean.mkdir()
    assert sweep(clean, data_mirror).wait(timeout=600) == 0
    expected = report(clean)

    crashy = tmp_path / "crashy"
    crashy.mkdir()
    chooser = random.Random(7)
    kills = 0
    for delay in (2.5, 5.0, 7.5, 10.0):  # through teacher training, student runs and record writing
        proc = sweep(crashy, data_mirror)
        time.sleep(delay + chooser.uniform(0, 1.5))
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            kills += 1
        proc.wait()
        before = snapshot(crashy)
        for path in before:  # every record on disk is complete and valid
            rec = json.loads(path.read_text())
            assert rec["status"] == "ok" and np.isfinite(rec["test_rmse"])
    assert kills >= 2
    before = snapshot(crashy)
    proc = sweep(crashy, data_mirror)
    assert proc.wait(timeout=600) == 0
    after = snapshot(crashy)
    assert all(after[p] == h for p, h in before.items())  # nothing finished was recomputed
    assert len(after) == 12
    assert report(crashy) == expected
