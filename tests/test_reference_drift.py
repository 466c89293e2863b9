"""Reference drift: the first epochs of committed reference runs (results/reference/) are reproduced.

Each cell reruns the stack of seeds that a committed record was trained in (its config's seeds, or
Tables 3/4: seeds 1..replicas) for its first few epochs, from its preset, with the teachers trained
afresh (deterministically, from the same seeds) in a temporary folder, and compares every seed's
per-epoch validation RMSE with the committed trace (and the teacher's test RMSE with the record's),
1e-6 relative where the record was made on this processor (its ``cpu``), 1e-3 elsewhere or where the record
does not say (conftest.pinned_rtol: other kernels, other rounding). The whole stack, not one seed alone: the
numbers of a replica depend on the stack's size at float rounding (measured at 5e7e2d5: seed 1 of cpusmall direct/1 alone differs from the 10-replica
run by 7e-8 at epoch 0 and 8e-4 by epoch 5; in the stack of 10 it is bit-identical). Everything expected is read from the committed record and trace, so when a table is
re-run and its records replaced, the test follows the new files.

Only cells whose alpha does not depend on the number of epochs are trimmed (constant alpha: random/0,
direct/1, generator/1, de/0.5): a decreasing alpha, 1 - (e+1)/E, changes with E from the first epoch.
Where a record keeps its resolved config, a failure also lists where the composed config differs from
it (besides seeds, epochs, paths and device), so a changed default in conf/ is named with the numbers.

Tables 3 and 4 were re-run at fe166bd (issue 13): the records of 5e7e2d5 before them differed from the code
since 276f470 (the MLP output layer's matrix-vector product through numpy changed its float rounding), which
this test caught at epoch 0. Protein (Table 6) reproduces its first epochs bit for bit; the MNIST cells are slow
(their teacher trains for about 9 CPU minutes), except table5_matched's, which distils from its committed teacher.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from conftest import pinned_rtol

REPO = Path(__file__).resolve().parents[1]
REFERENCE = REPO / "results" / "reference"
# Keys of a recorded config that differ between the committed run and this rerun by design.
RUN_KEYS = {"seeds", "first_seed", "epochs", "device", "progress", "results_dir", "teacher_dir", "data_dir",
            "data_mirror", "checkpoint_every_s", "experiment_name"}



@dataclass(frozen=True)
class Cell:
    id: str
    folder: str              # under results/reference/
    preset: tuple            # Hydra overrides that compose the record's cell
    epochs: int = 3
    marks: tuple = field(default=())
    teacher: str = ""        # a committed teacher file (under results/reference/) put in the cache instead of training


CELLS = [
    Cell("table4-cpusmall-mlp50-random", "records/cpusmall/mlp50/random-0",
         ("experiment=table4", "dataset=cpusmall", "variant=random-0")),
    Cell("table4-cpusmall-mlp50-direct-1", "records/cpusmall/mlp50/direct-1",
         ("experiment=table4", "dataset=cpusmall", "variant=direct-1")),
    Cell("table3-cpusmall-mlp25-generator-1", "records/cpusmall/mlp25/generator-1",
         ("experiment=table3", "dataset=cpusmall", "variant=generator-1")),
    Cell("scarce-cpusmall-tsm-p0.1", "records/cpusmall/mlp50/tsm-1-p0.1",
         ("experiment=scarce", "dataset=cpusmall", "variant=tsm-1", "real_fraction=0.1")),
    Cell("table4-pole-mlp50-random", "records/pole/mlp50/random-0",  # 10 pole teachers: ~30 s
         ("experiment=table4", "dataset=pole", "variant=random-0"), marks=(pytest.mark.slow,)),
    Cell("table6-protein-de-half", "records/protein/rbf100/de-0.5", ("experiment=table6", "variant=de-0.5"),
         epochs=2, marks=(pytest.mark.slow,)),  # ~25-40 s; protein-random keeps Table 6 in the default run
    Cell("table6-protein-random", "records/protein/rbf100/random-0", ("experiment=table6", "variant=random-0"),
         epochs=20),
    # The MNIST teacher (15 epochs on 55000 images) takes about 9 minutes on one core; both cells share it.
    Cell("table5cpu-mnist-random", "table5_cpu/records/mnist/cnn5/random-0",
         ("experiment=table5_cpu", "variant=random-0"), marks=(pytest.mark.slow,)),
    Cell("table5-mnist-random", "records/mnist/cnn5/random-0",
         ("experiment=table5", "variant=random-0"), marks=(pytest.mark.slow,)),
    # Its committed teacher (retrained elsewhere it is another network): the students' first epochs, in seconds.
    Cell("table5_matched-mnist-random", "table5_matched/records/mnist/cnn5/random-0",
         ("experiment=table5_matched", "teacher=cnn10_same", "teacher.label_dropout=false", "variant=random-0"),
         teacher="table5_matched/teacher/seed00-0a7b1c347ac893e0.pt"),
]


@pytest.fixture(scope="module")
def mirror() -> Path:
    return Path(os.environ.get("DFKD_DATA_MIRROR") or REPO.parent / "shared" / "data").resolve()


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory) -> Path:
    """Teachers trained here, once per (dataset, seed), shared by the cells of this module."""
    return tmp_path_factory.mktemp("reference-teachers")


def compose(cell: Cell, seeds: list[int], tmp: Path, mirror: Path, teacher_dir: Path) -> dict:
    from hydra import compose as hydra_compose, initialize_config_dir
    from omegaconf import OmegaConf

    import dfkd

    conf = Path(dfkd.__file__).resolve().parents[1] / "conf"  # the configs of the checkout dfkd comes from
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        cfg = hydra_compose("config", overrides=list(cell.preset) + [
            f"seeds=[{','.join(map(str, seeds))}]", f"epochs={cell.epochs}", "device=cpu", "threads=1", "progress=false",
            "checkpoint_every_s=0", f"results_dir={tmp / 'results'}", f"teacher_dir={teacher_dir}",
            f"data_dir={tmp / 'data'}", f"data_mirror={mirror}"])
    return OmegaConf.to_container(cfg, resolve=True)


def config_differences(recorded, composed, where="") -> list[str]:
    """Keys present in both whose values differ (``_target_`` compared by class name: modules may move)."""
    if isinstance(recorded, dict) and isinstance(composed, dict):
        out = []
        for key in sorted(set(recorded) & set(composed)):
            if not where and key in RUN_KEYS:
                continue
            out += config_differences(recorded[key], composed[key], f"{where}{key}.")
        return out
    if where.endswith("_target_.") and isinstance(recorded, str) and isinstance(composed, str):
        recorded, composed = recorded.rsplit(".", 1)[-1], composed.rsplit(".", 1)[-1]
    return [] if recorded == composed else [f"{where[:-1]}: recorded {recorded!r}, composed {composed!r}"]


def recorded_stack(record: dict) -> list[int]:
    """The seeds a record was trained together with (its config's, else 1..replicas as the table presets)."""
    seeds = (record.get("config") or {}).get("seeds")
    return list(seeds) if isinstance(seeds, list) else list(range(1, int(record["replicas"]) + 1))


@pytest.mark.parametrize("cell", [pytest.param(c, id=c.id, marks=c.marks) for c in CELLS])
def test_reference_first_epochs(cell, mirror, teacher_dir, tmp_path):
    from dfkd.distill import run_config

    folder = REFERENCE / cell.folder
    first = folder / "seed01.json"
    if not first.is_file():
        pytest.skip(f"no committed record {first.relative_to(REPO)}")
    record = json.loads(first.read_text())
    seeds = recorded_stack(record)
    assert len(seeds) == record["replicas"] and 1 in seeds
    cfg = compose(cell, seeds, tmp_path, mirror, teacher_dir)
    if cell.teacher:
        (teacher_dir / record["dataset"]).mkdir(parents=True, exist_ok=True)
        shutil.copy(REFERENCE / cell.teacher, teacher_dir / record["dataset"] / Path(cell.teacher).name)
    missing = [f["path"] for f in cfg["dataset"].get("files", []) if not (mirror / f["path"]).is_file()]
    if missing:
        pytest.skip(f"data files {missing} not in the data mirror {mirror}: set DFKD_DATA_MIRROR to the shared data folder")
    assert record["status"] == "ok" and record["epochs_run"] >= cell.epochs
    assert record.get("alpha_schedule") == "constant" or cell.epochs == record["epochs"], \
        "a non-constant alpha depends on the number of epochs: trim only constant-alpha cells"
    # Config keys may be renamed or restructured by a refactor without changing a number, so a difference
    # is reported with the numbers (where they differ) rather than failing alone.
    config_diff = config_differences(record["config"], cfg) if "config" in record else []
    if "config" not in record:  # Tables 3/4: the record's own fields
        for key in ("method", "student", "teacher"):
            assert record[key] == cfg[key]["name"], key
        assert (record["alpha_schedule"], record["alpha_value"]) == (cfg["alpha"]["schedule"], cfg["alpha"]["value"])
        assert (record["steps_per_epoch"], record["dataset"]) == (cfg["steps_per_epoch"], cfg["dataset"]["name"])

    rtol, tolerance = pinned_rtol(record.get("cpu"))
    run_config(cfg, log=lambda *_: None)
    ran = {int(p.stem[4:]): p for p in (tmp_path / "results" / "records").glob("*/*/*/seed*.json")}
    assert sorted(ran) == sorted(seeds)
    lines, failures = [], []
    for seed in seeds:
        ref = json.loads((folder / f"seed{seed:02d}.json").read_text())
        if ref.get("status") != "ok":
            continue
        want = np.load(folder / ref.get("trace_file", f"seed{seed:02d}.trace.npz"))["val_rmse"][:cell.epochs]
        got = json.loads(ran[seed].read_text())
        trace = np.load(ran[seed].with_suffix(".trace.npz"))["val_rmse"]
        rel = np.abs(trace.astype(np.float64) - want) / np.abs(want.astype(np.float64))
        teacher_rel = abs(got["teacher_test_rmse"] / ref["teacher_test_rmse"] - 1)
        lines.append(f"seed {seed}: teacher test RMSE rel {teacher_rel:.1e}, val_rmse rel per epoch "
                     + " ".join(f"{r:.1e}" for r in rel))
        if got["batch_size"] != ref["batch_size"] or len(trace) != len(want) or teacher_rel > rtol \
                or not np.allclose(trace, want, rtol=rtol, atol=0):
            failures.append(seed)
    assert lines, "no finished seed to compare"
    assert not failures, (f"{cell.id}: seeds {failures} differ from the committed run (commit "
                          f"{record.get('git_commit', '?')[:7]}; {tolerance}):\n" + "\n".join(lines)
                          + "".join(f"\nconfig differs: {d}" for d in config_diff))
