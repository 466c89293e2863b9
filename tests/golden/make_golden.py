"""Write tests/golden/golden.json: per-epoch validation RMSE of small fixed cells, one per method.

The fixture pins the numbers of the code at one commit, so that a refactor that silently changes a
number (a different random stream, an op reordered, a default changed) fails ``tests/test_golden.py``.
Generate it from a clean checkout of the commit to pin, not from a working tree being reshaped:

    git worktree add /tmp/golden-src <commit>
    DFKD_DATA_MIRROR=/work/shared/data PYTHONPATH=/tmp/golden-src \\
        .venv/bin/python tests/golden/make_golden.py --commit <commit> --check
    git worktree remove --force /tmp/golden-src

The package and the ``conf/`` folder are both taken from where ``dfkd`` is imported from (the
worktree above). ``--check`` runs every case twice (the second time with its own fresh teacher
cache) and refuses to write unless both runs agree bit for bit. The case list lives here (CASES) and
is written into the json, which the test reads: the test and this script share one list.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
GOLDEN = HERE / "golden.json"

# Every case runs on the CPU with one thread and no progress bars or mid-run checkpoints.
COMMON = ["device=cpu", "threads=1", "progress=false", "checkpoint_every_s=0"]
# A tiny tabular cell: a 5-epoch teacher, 2 seeds trained as one stack, 5 epochs of 3 steps.
TABULAR = ["dataset=cpusmall", "student=mlp25", "teacher.max_epochs=5", "seeds=2", "epochs=5", "steps_per_epoch=3"]
# The eSol cell of Table 6 (black-box SVR teacher, RBF-100 student, 10 rows per step), 4 epochs of 3 steps.
PROTEIN = ["experiment=table6", "seeds=2", "epochs=4", "steps_per_epoch=3"]
# Table 5's MNIST cell on a subset: a 2-epoch CNN teacher on 500 images, 200 validation and 200 test images.
MNIST = ["experiment=table5", "seeds=2", "epochs=3", "steps_per_epoch=2", "teacher.epochs=2", "subset.train=500",
         "subset.test=200", "dataset.split.n_val=200", "synthetic_samples=4"]

CASES = [
    {"id": "cpusmall-random", "overrides": TABULAR + ["variant=random-0"]},
    {"id": "cpusmall-generator-decreasing", "overrides": TABULAR + ["variant=generator-decreasing"]},
    {"id": "cpusmall-generator-one", "overrides": TABULAR + ["variant=generator-1"]},
    {"id": "cpusmall-direct-decreasing", "overrides": TABULAR + ["variant=direct-decreasing"]},
    {"id": "cpusmall-direct-one", "overrides": TABULAR + ["variant=direct-1"]},
    {"id": "protein-de-half", "overrides": PROTEIN + ["variant=de-0.5"]},
    {"id": "protein-random", "overrides": PROTEIN + ["variant=random-0"]},
    {"id": "mnist-random", "overrides": MNIST + ["variant=random-0"]},
    {"id": "mnist-generator", "overrides": MNIST + ["variant=generator_mnist-decreasing", "method.rounds=2"]},
    {"id": "mnist-direct", "overrides": MNIST + ["variant=direct_mnist-decreasing", "method.steps=2"]},
]
for _case in CASES:
    _case["overrides"] = COMMON + _case["overrides"]


def conf_dir() -> Path:
    """The ``conf/`` folder beside the imported ``dfkd`` package (the code and its configs from one checkout)."""
    import dfkd

    return Path(dfkd.__file__).resolve().parents[1] / "conf"


def compose_case(overrides, tmp: Path, mirror: Path, teacher_dir: Path | None = None) -> dict:
    """The resolved config dict of ``overrides``, every output under ``tmp``, data from ``mirror``."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        cfg = compose("config", overrides=list(overrides) + [
            f"results_dir={tmp / 'results'}", f"teacher_dir={teacher_dir or tmp / 'teachers'}",
            f"data_dir={tmp / 'data'}", f"data_mirror={mirror}"])
    return OmegaConf.to_container(cfg, resolve=True)


def run_case(overrides, tmp: Path, mirror: Path, teacher_dir: Path | None = None) -> dict:
    """Run one case through ``dfkd.distill.run_config``; per seed: its val_rmse trace and test RMSE."""
    import numpy as np

    from dfkd.distill import run_config

    run_config(compose_case(overrides, tmp, mirror, teacher_dir), log=lambda *_: None)
    out = {}
    for path in sorted((tmp / "results" / "records").glob("*/*/*/seed*.json")):
        rec = json.loads(Path(path).read_text())
        trace = np.load(Path(path).with_suffix(".trace.npz"))
        out[str(rec["seed"])] = {"val_rmse": [float(v) for v in trace["val_rmse"]],
                                 "test_rmse": float(rec["test_rmse"]),
                                 "teacher_test_rmse": float(rec["teacher_test_rmse"])}
    return out


def data_mirror() -> Path:
    path = os.environ.get("DFKD_DATA_MIRROR")
    if not path:
        sys.exit("set DFKD_DATA_MIRROR to the shared data folder")
    return Path(path).resolve()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--commit", required=True, help="the commit the imported dfkd was checked out at")
    ap.add_argument("--check", action="store_true", help="run every case twice and require identical numbers")
    ap.add_argument("--out", type=Path, default=GOLDEN)
    args = ap.parse_args(argv)
    import dfkd

    src = Path(dfkd.__file__).resolve().parents[1]
    head = subprocess.run(["git", "-C", str(src), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(src), "status", "--porcelain", "--", "dfkd", "conf"],
                           capture_output=True, text=True).stdout.strip()
    if not head.startswith(args.commit) or dirty:
        sys.exit(f"dfkd is imported from {src} at {head or '?'}{' (modified)' if dirty else ''}, not {args.commit}")
    print(f"dfkd from {src} at {head}", flush=True)
    mirror = data_mirror()
    cases = []
    with tempfile.TemporaryDirectory() as tmp:
        shared = Path(tmp) / "teachers"  # one teacher cache for all cases, as the test does
        for case in CASES:
            t0 = time.perf_counter()
            got = run_case(case["overrides"], Path(tmp) / case["id"], mirror, shared)
            wall = time.perf_counter() - t0
            line = f"{case['id']:32s} {wall:6.1f} s"
            if args.check:  # again, training its own teacher: bit-identical or no fixture
                again = run_case(case["overrides"], Path(tmp) / (case["id"] + "-again"), mirror)
                if again != got:
                    sys.exit(f"{case['id']}: not reproducible:\n{json.dumps(got)}\n{json.dumps(again)}")
                line += "  reproducible (bit-identical, fresh teacher)"
            print(line, flush=True)
            cases.append({**case, "seconds": round(wall, 2), "seeds": got})
    import numpy
    import torch

    from dfkd.records import cpu_fingerprint

    args.out.write_text(json.dumps({
        "about": "per-epoch validation RMSE of small fixed cells; written by tests/golden/make_golden.py, "
                 "checked by tests/test_golden.py", "commit": head, "cpu": cpu_fingerprint(),
        "torch_version": torch.__version__, "numpy_version": numpy.__version__,
        "python_version": sys.version.split()[0], "cases": cases}, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
