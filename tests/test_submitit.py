"""The cluster path: a sweep through Hydra's submitit launcher, run by submitit's local executor.

``hydra/launcher=submitit_local`` is the code path of ``hydra/launcher=slurm`` (conf/hydra/launcher/
slurm.yaml) without a scheduler: every job is pickled, run in its own process by submitit and its
result collected. Two jobs fill one shared results folder, as the nodes of a cluster do.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest

pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="pip install hydra-submitit-launcher "
                    "(in requirements.lock and the test extra)")


@pytest.mark.slow
def test_submitit_sweep_fills_one_results_folder(tmp_path, data_mirror):
    results, sweep, submitit = tmp_path / "results", tmp_path / "sweep", tmp_path / "submitit"
    env = dict(os.environ, DFKD_DATA_MIRROR=str(data_mirror), HYDRA_FULL_ERROR="1")
    cmd = [sys.executable, "-m", "dfkd.distill", "-m", "dataset=cpusmall", "method=random,direct", "alpha=zero",
           "seeds=2", "epochs=3", "steps_per_epoch=2", "teacher.max_epochs=2", "progress=false", "threads=1",
           "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10", "hydra.launcher.cpus_per_task=1",
           f"hydra.launcher.submitit_folder={submitit}/%j", f"hydra.sweep.dir={sweep}",
           f"results_dir={results}", f"teacher_dir={tmp_path / 'teachers'}", f"data_dir={tmp_path / 'data'}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]

    cells = {m: results / "records/cpusmall/mlp50" / f"{m}-0" for m in ("random", "direct")}
    recs = {m: [json.loads((cell / f"seed0{s}.json").read_text()) for s in (1, 2)] for m, cell in cells.items()}
    for method, pair in recs.items():
        for seed, rec in zip((1, 2), pair):
            assert rec["status"] == "ok" and rec["seed"] == seed, rec
            assert math.isfinite(rec["test_rmse"]) and rec["test_rmse"] > 0, rec
            assert rec["variant"] == f"{method}-0", rec
    assert len(list((results / "records").rglob("seed*.json"))) == 4
    # both jobs needed the same two teachers: trained once, shared
    assert len(list((tmp_path / "teachers/cpusmall").glob("seed*.pt"))) == 2
    # the jobs ran under submitit (one folder per job, with its pickled result) and wrote nothing outside tmp_path
    results_pkl = sorted(submitit.glob("*/*_result.pkl"))
    assert len(results_pkl) == 2 and len({p.parent for p in results_pkl}) == 2, sorted(submitit.rglob("*"))
    assert len(list(sweep.rglob(".hydra/overrides.yaml"))) == 2  # Hydra's own output folder of each job
