"""A real Hydra sweep through the local parallel launcher, then the report: the whole path a user takes."""

import json
import os
import subprocess
import sys


def test_parallel_sweep_shares_teachers_and_feeds_the_report(tmp_path, data_mirror):
    env = dict(os.environ, DFKD_DATA_MIRROR=str(data_mirror))
    cmd = [sys.executable, "-m", "dfkd.distill", "-m", "dataset=cpusmall", "variant=random-0,direct-1",
           "student=mlp25", "seeds=2", "epochs=3", "steps_per_epoch=2", "teacher.max_epochs=2", "progress=false",
           "experiment_name=table3", "hydra/launcher=local", "hydra.launcher.n_jobs=2",
           f"results_dir={tmp_path / 'results'}", f"teacher_dir={tmp_path / 'teachers'}", f"data_dir={tmp_path / 'data'}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    recs = sorted((tmp_path / "results" / "records").rglob("seed*.json"))
    assert len(recs) == 4
    variants = {json.loads(p.read_text())["variant"] for p in recs}
    assert variants == {"random-0", "direct-1"}
    # both jobs needed the same two teachers: trained once, under a lock
    assert len(list((tmp_path / "teachers" / "cpusmall").glob("seed*.pt"))) == 2
    teacher_rmse = {json.loads(p.read_text())["teacher_test_rmse"] for p in recs}
    assert len(teacher_rmse) == 2
    # one log per job kept beside the sweep
    assert len(list((tmp_path / "results" / "logs").rglob("*.log"))) >= 2

    out = tmp_path / "tables"
    rep = subprocess.run([sys.executable, "-m", "dfkd.report", "--records", str(tmp_path / "results" / "records"),
                          "--out", str(out), "--tables", "table3"], capture_output=True, text=True, timeout=120)
    assert rep.returncode == 0, rep.stderr
    table = (out / "table3.md").read_text()
    row = next(line for line in table.splitlines() if line.startswith("| cpusmall"))
    assert row.count("(2)") == 3  # teacher, random and direct-1 cells have 2 seeds each
    assert "not run" in row  # the generator columns and direct-decreasing were not run
