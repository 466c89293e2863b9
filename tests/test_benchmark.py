"""The benchmark tables (experiments/methods.py, experiments/scarce.py; dfkd.report.benchmark) on hand-made records,
their presets (conf/experiment/methods.yaml, scarce.yaml) and make targets."""

from __future__ import annotations

import json
import math
import os
import random
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from dfkd.errors import ConfigError
from dfkd.records import Record
from dfkd.report import load_records
from dfkd.report.benchmark import (CSV_COLUMNS, analyse, benchmark_frame, fraction_variant, load_benchmark_specs,
                                   paired_test, ranks, render_benchmark, validate_benchmark, write_benchmark)

ROOT = Path(__file__).resolve().parents[1]
SPECS = load_benchmark_specs()

TINY = dict(
    name="tiny", title="Tiny benchmark", students=["mlp50"], datasets=["a", "b", "c", "d"],
    columns=[dict(variant="random-0", label="Random"), dict(variant="direct-decreasing", label="Direct"),
             dict(variant="soft_target-decreasing", label="Soft")],
    references=["random-0", "direct-decreasing"],
)

# Ten seeds' RMSE of two methods, no ties and no zero differences among the pairs.
DIRECT = [0.201, 0.195, 0.188, 0.210, 0.199, 0.205, 0.190, 0.197, 0.203, 0.192]
RANDOM = [0.214, 0.199, 0.187, 0.226, 0.208, 0.207, 0.203, 0.206, 0.219, 0.193]


def record(*, dataset="a", variant="random-0", seed=1, rmse=0.2, last=None, student="mlp50", fraction=None,
           status="ok", teacher=0.1, created="2026-01-01T00:00:00", suffixed=False) -> dict:
    """One record dict as the cell writes it (``dfkd.records.Record``); ``variant`` is the full name (``tsm-1-p0.1``)
    and ``fraction`` its real_fraction (read by the report with .get: the fields may not be in Record yet)."""
    name = variant[: -len(f"-p{fraction:g}")] if fraction else variant
    method, alpha = name.rsplit("-", 1)
    rec = Record(dataset=dataset, method=method, alpha=alpha, student=student, seed=seed, status=status,
                 test_rmse=rmse if status == "ok" else None, test_rmse_last=(last if last is not None else rmse)
                 if status == "ok" else None, teacher_test_rmse=teacher, experiment="test", created=created).to_dict()
    if fraction:
        rec.update(real_fraction=float(fraction), real_rows=int(round(5000 * fraction)))
        if suffixed:  # a writer that puts the suffix in the record's variant itself
            rec["variant"] = variant
    return rec


def write(root: Path, rec: dict, variant: str | None = None) -> Path:
    """``rec`` at ``<root>/<dataset>/<student>/<variant>/seedNN.json``, the cell's layout (``variant``: the full name,
    by default the record's with its fraction's suffix)."""
    variant = variant or fraction_variant(rec["variant"], rec.get("real_fraction"))
    path = root / rec["dataset"] / rec["student"] / variant / f"seed{rec['seed']:02d}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rec))
    return path


def one(frame: pd.DataFrame, **where) -> pd.Series:
    rows = frame
    for key, value in where.items():
        rows = rows[rows[key] == value]
    assert len(rows) == 1, (where, len(rows))
    return rows.iloc[0]


# ------------------------------------------------------------------ statistics

def test_wilcoxon_p_value_is_scipys_on_the_same_pairs(tmp_path):
    for seed, (d, r) in enumerate(zip(DIRECT, RANDOM), start=1):
        write(tmp_path, record(variant="direct-decreasing", seed=seed, rmse=d, last=d + 0.01 * (seed % 3)))
        write(tmp_path, record(variant="random-0", seed=seed, rmse=r, last=r))
    result = analyse(load_records(tmp_path), TINY)
    test = one(result["tests"], dataset="a", variant="direct-decreasing", reference_variant="random-0", selection="best")
    assert test.n_pairs == 10 and test.seeds == list(range(1, 11))
    assert test.p_value == stats.wilcoxon(DIRECT, RANDOM).pvalue
    last = one(result["tests"], dataset="a", variant="direct-decreasing", reference_variant="random-0",
               selection="last")
    assert last.p_value == stats.wilcoxon([d + 0.01 * (s % 3) for s, d in enumerate(DIRECT, start=1)], RANDOM).pvalue
    # the other direction is the same test with the opposite outcome
    back = one(result["tests"], dataset="a", variant="random-0", reference_variant="direct-decreasing",
               selection="best")
    assert back.p_value == test.p_value and (test.outcome, back.outcome) == ("W", "L")


def test_pairs_are_by_seed_over_the_common_seeds(tmp_path):
    recs = [record(variant="direct-decreasing", seed=s, rmse=d) for s, d in enumerate(DIRECT, start=1)]
    recs += [record(variant="random-0", seed=s, rmse=r) for s, r in enumerate(RANDOM, start=1) if s != 4]
    random.Random(0).shuffle(recs)
    for rec in recs:
        write(tmp_path, rec)
    common = [s for s in range(1, 11) if s != 4]
    expected = stats.wilcoxon([DIRECT[s - 1] for s in common], [RANDOM[s - 1] for s in common]).pvalue
    for df in (load_records(tmp_path), pd.DataFrame(recs)):  # a folder of files, and record dicts in shuffled order
        test = one(analyse(df, TINY)["tests"], dataset="a", variant="direct-decreasing", reference_variant="random-0",
                   selection="best")
        assert test.n_pairs == 9 and test.seeds == common
        assert test.p_value == expected
    # a misaligned pairing (by position, seed 4 dropped from one side only) would give another p-value
    assert expected != stats.wilcoxon(DIRECT[:9], [r for s, r in enumerate(RANDOM, start=1) if s != 4]).pvalue


def test_paired_test_matches_scipy_with_zero_differences_and_no_pairs():
    a = pd.Series([0.1, 0.2, 0.3, 0.25, 0.4, 0.15], index=[6, 1, 2, 3, 4, 5])
    b = pd.Series([0.2, 0.3, 0.3, 0.35, 0.5, 0.25, 0.9], index=[1, 6, 2, 3, 4, 5, 7])
    res = paired_test(a, b)
    seeds = [1, 2, 3, 4, 5, 6]
    assert res["seeds"] == seeds and res["p_value"] == stats.wilcoxon(a.loc[seeds], b.loc[seeds]).pvalue
    none = paired_test(a, pd.Series([0.1], index=[99]))
    assert none["n_pairs"] == 0 and math.isnan(none["p_value"]) and none["outcome"] == ""


def test_wins_ties_and_losses(tmp_path):
    offsets = {  # soft - random on each seed
        "a": [-0.01 * (1 + s % 3) for s in range(10)],  # lower on every seed: p = 0.002, a win
        "b": [0.01 * (1 + s % 3) for s in range(10)],  # higher on every seed: a loss
        "c": [0.01, -0.02, 0.03, -0.01, 0.02, -0.03, 0.005, -0.004, 0.006, -0.007],  # mixed: a tie
        "d": [-0.01, -0.02, -0.03, -0.04, -0.05],  # lower on all of 5 seeds: p = 0.0625 >= 0.05, a tie
    }
    for ds, deltas in offsets.items():
        for seed, delta in enumerate(deltas, start=1):
            base = 0.2 + 0.001 * seed
            write(tmp_path, record(dataset=ds, variant="random-0", seed=seed, rmse=base))
            write(tmp_path, record(dataset=ds, variant="soft_target-decreasing", seed=seed, rmse=base + delta))
    result = analyse(load_records(tmp_path), TINY)
    tests = result["tests"]
    outcomes = {ds: one(tests, dataset=ds, variant="soft_target-decreasing", reference_variant="random-0",
                        selection="best").outcome for ds in offsets}
    assert outcomes == {"a": "W", "b": "L", "c": "T", "d": "T"}
    assert one(tests, dataset="d", variant="soft_target-decreasing", reference_variant="random-0",
               selection="best").p_value == pytest.approx(0.0625)
    wtl = one(result["wtl"], variant="soft_target-decreasing", reference_variant="random-0", selection="best")
    assert (wtl.wins, wtl.ties, wtl.losses, wtl.n_datasets) == (1, 2, 1, 4)
    # direct-decreasing has no records: no pairs, no outcome, nothing counted
    none = one(result["wtl"], variant="soft_target-decreasing", reference_variant="direct-decreasing",
               selection="best")
    assert (none.wins, none.ties, none.losses, none.n_datasets) == (0, 0, 0, 0)
    md = render_benchmark(result, TINY)
    section = md.split("### Paired tests against Random")[1].split("###")[0]
    row = next(line for line in section.splitlines() if line.startswith("| Soft |"))
    assert row.endswith("| 1/2/1 | 1/2/1 |") and "W p=0.002" in row
    assert "p < 0.05 and lower RMSE" in md  # the rule is stated


def test_average_ranks_on_two_datasets(tmp_path):
    means = {"a": {"random-0": 0.3, "direct-decreasing": 0.1, "soft_target-decreasing": 0.2},
             "b": {"random-0": 0.2, "direct-decreasing": 0.3, "soft_target-decreasing": 0.2}}
    # a: direct 1, soft 2, random 3; b: random and soft share ranks 1 and 2 (1.5 each), direct 3
    expected = {"direct-decreasing": 2.0, "soft_target-decreasing": 1.75, "random-0": 2.25}
    per, avg = ranks(means)
    assert per["b"] == {"random-0": 1.5, "direct-decreasing": 3.0, "soft_target-decreasing": 1.5}
    assert {v: a for v, (a, _) in avg.items()} == expected and all(n == 2 for _, n in avg.values())
    for ds, by in means.items():
        for variant, mean in by.items():  # two seeds per cell around the mean
            write(tmp_path, record(dataset=ds, variant=variant, seed=1, rmse=mean - 0.01))
            write(tmp_path, record(dataset=ds, variant=variant, seed=2, rmse=mean + 0.01))
    result = analyse(load_records(tmp_path), TINY)
    got = result["avg_ranks"][result["avg_ranks"]["selection"] == "best"].set_index("variant")
    assert got["avg_rank"].to_dict() == pytest.approx(expected)
    assert set(got["n_datasets"]) == {2}  # datasets c and d have no records: not ranked
    assert one(result["ranks"], dataset="a", variant="random-0", selection="best")["rank"] == 3.0


def test_scarce_ranks_within_each_p_with_the_data_free_columns(tmp_path):
    spec = SPECS["scarce"]
    for p, value in ((0.01, 0.3), (0.1, 0.1)):
        for seed in (1, 2):
            write(tmp_path, record(dataset="pole", variant=fraction_variant("tsm-1", p), fraction=p, seed=seed,
                                   rmse=value))
    for seed in (1, 2):
        write(tmp_path, record(dataset="pole", variant="direct-decreasing", seed=seed, rmse=0.2))
    got = analyse(load_records(tmp_path), spec)["avg_ranks"]
    best = got[got["selection"] == "best"].set_index(["group", "variant"])["avg_rank"]
    assert best[("p = 0.01", "tsm-1-p0.01")] == 2.0 and best[("p = 0.01", "direct-decreasing")] == 1.0
    assert best[("p = 0.1", "tsm-1-p0.1")] == 1.0 and best[("p = 0.1", "direct-decreasing")] == 2.0
    assert ("p = 0.1", "tsm-1-p0.01") not in best.index


def test_confidence_interval_is_scipys_t_interval(tmp_path):
    values = [0.21, 0.19, 0.25, 0.2, 0.23, 0.18, 0.22]
    for seed, v in enumerate(values, start=1):
        write(tmp_path, record(dataset="b", variant="direct-decreasing", seed=seed, rmse=v))
    cell = one(analyse(load_records(tmp_path), TINY)["cells"], dataset="b", variant="direct-decreasing",
               selection="best")
    lo, hi = stats.t.interval(0.95, len(values) - 1, loc=np.mean(values), scale=stats.sem(values))
    assert (cell.ci_low, cell.ci_high) == (pytest.approx(lo, rel=1e-12), pytest.approx(hi, rel=1e-12))
    assert cell["mean"] == pytest.approx(np.mean(values)) and cell["std"] == pytest.approx(np.std(values, ddof=1))
    assert cell.n_ok == 7


def test_tsm_against_kd_reduction_is_the_hand_computation(tmp_path):
    spec = SPECS["scarce"]
    means = {  # dataset: (kd at p = 0.1, tsm at p = 0.1, kd at p = 0.01, tsm at p = 0.01)
        "pole": (0.30, 0.15, 0.40, 0.36),
        "mv": (0.05, 0.04, 0.08, 0.06),
    }
    for ds, (kd10, tsm10, kd1, tsm1) in means.items():
        for seed, jitter in ((1, -0.001), (2, 0.001)):
            for name, p, value in (("kd-1", 0.1, kd10), ("tsm-1", 0.1, tsm10), ("kd-1", 0.01, kd1),
                                   ("tsm-1", 0.01, tsm1)):
                variant = fraction_variant(name, p)
                # seed 2's records carry the suffix in their variant; seed 1's only in their folder and real_fraction
                write(tmp_path, record(dataset=ds, variant=variant, fraction=p, seed=seed, rmse=value + jitter,
                                       suffixed=seed == 2), variant)
    result = analyse(load_records(tmp_path), spec)
    hand10 = ((0.30 - 0.15) / 0.30 * 100 + (0.05 - 0.04) / 0.05 * 100) / 2  # 35 %
    hand1 = ((0.40 - 0.36) / 0.40 * 100 + (0.08 - 0.06) / 0.08 * 100) / 2  # 17.5 %
    avg = result["avg_reductions"]
    kd = avg[(avg["group"] == "TSM against base KD (same p)") & (avg["selection"] == "best")].set_index("fraction")
    assert kd.loc[0.1, "reduction_pct"] == pytest.approx(hand10) and kd.loc[0.1, "n_datasets"] == 2
    assert kd.loc[0.01, "reduction_pct"] == pytest.approx(hand1)
    assert kd.loc[0.1, "paper_pct"] == 43.91 and math.isnan(kd.loc[0.01, "paper_pct"])
    cell = one(result["cells"], dataset="pole", variant="tsm-1-p0.1", selection="best")
    assert cell.n_ok == 2 and cell.real_rows == 500
    md = render_benchmark(result, spec)
    section = md.split("## RMSE reduction: TSM against base KD (same p)")[1].split("## ")[0]
    assert f"| mlp50 | 0.1 | {hand10:.2f} % | {hand10:.2f} % | 2 | 43.91 % |" in section
    assert "43.91 % on average against existing KD methods" in section
    # direct optimization at p = 0 not run: the second reduction says so, no crash
    free = avg[(avg["group"] != "TSM against base KD (same p)") & (avg["selection"] == "best")]
    assert (free["n_datasets"] == 0).all() and "| mlp50 | 0.1 | not run | not run | 0 | – |" in md


def test_tsm_is_tested_against_kd_at_its_own_p(tmp_path):
    spec = SPECS["scarce"]
    for seed in range(1, 7):
        for name, p, value in (("kd-1", 0.1, 0.3), ("tsm-1", 0.1, 0.2), ("kd-1", 0.01, 0.1)):
            write(tmp_path, record(dataset="mv", variant=fraction_variant(name, p), fraction=p, seed=seed,
                                   rmse=value + 0.001 * seed), fraction_variant(name, p))
    tests = analyse(load_records(tmp_path), spec)["tests"]
    test = one(tests, dataset="mv", variant="tsm-1-p0.1", reference_variant="kd-1-p0.1", selection="best")
    assert test.outcome == "W" and test.n_pairs == 6
    assert tests[(tests["variant"] == "tsm-1-p0.1") & (tests["reference_variant"] == "kd-1-p0.01")].empty
    # the data-free columns have no "same p" KD to be tested against
    assert tests[(tests["variant"] == "direct-decreasing") & tests["reference_variant"].str.startswith("kd-1")].empty


# ---------------------------------------------------------------------- render

def test_missing_cells_render_not_run_and_partial_runs_their_seeds(tmp_path):
    spec = SPECS["methods"]
    for seed in (1, 2, 3):
        write(tmp_path, record(dataset="pole", variant="direct-decreasing", student="mlp25", seed=seed, rmse=0.28))
    write(tmp_path, record(dataset="pole", variant="random-0", student="mlp25", seed=4, status="failed"))
    result = analyse(load_records(tmp_path), spec)
    md = render_benchmark(result, spec, {"ctscan": False, "pole": True})
    mlp25 = md.split("## Student mlp25")[1].split("## Student mlp50")[0]
    table = mlp25.split("### Average rank")[0]
    header = next(line for line in table.splitlines() if line.startswith("| Method |"))
    datasets = header.strip("| ").split(" | ")[1:]
    rows = {line.split(" | ")[0].lstrip("| "): dict(zip(datasets, line.strip("| ").split(" | ")[1:]))
            for line in table.splitlines() if line.startswith("| ") and not line.startswith("| Method")}
    direct = rows["Direct optimizer; decreasing α"]
    assert direct["pole"].startswith("best 0.2800 ± 0.0000 [0.2800, 0.2800] (3)")
    assert direct["ctscan"] == "not run (data missing)" and direct["mv"] == "not run"
    assert rows["Random sampling"]["pole"].startswith("best all 1 failed")
    assert rows["Differential evolution, black-box MLP teacher; decreasing α"]["pole"] == "not run"
    mlp50 = md.split("## Student mlp50")[1]
    assert "0.2800" not in mlp50 and "not run (data missing)" in mlp50
    # every cell, test and rank is in the CSV, with the columns it promises
    frame = benchmark_frame(result)
    assert list(frame.columns) == CSV_COLUMNS
    cells = frame[frame["section"] == "cell"]
    assert len(cells) == 2 * 7 * 6 * 2  # students x datasets x columns x selections
    assert one(cells, student="mlp25", dataset="pole", variant="direct-decreasing", selection="last").n_ok == 3


def test_no_records_at_all_renders_every_cell_not_run():
    for spec in SPECS.values():
        result = analyse(pd.DataFrame(), spec)
        md = render_benchmark(result, spec, {})
        assert md.startswith(f"# {spec['title']}") and "not run" in md and "nan" not in md
        assert (result["cells"]["n_ok"] == 0).all()


def test_write_and_cli_write_both_benchmarks(tmp_path):
    records, out = tmp_path / "records", tmp_path / "tables"
    for seed in (1, 2):
        write(records, record(dataset="pole", variant="direct-decreasing", seed=seed, rmse=0.2 + 0.01 * seed))
        write(records, record(dataset="pole", variant="tsm-1-p0.1", fraction=0.1, seed=seed, rmse=0.1), "tsm-1-p0.1")
    md_path, csv_path, _ = write_benchmark(load_records(records), SPECS["scarce"], tmp_path / "direct")
    assert md_path.read_text(encoding="utf-8").startswith("# Scarce real data")
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-m", "dfkd.report", "--records", str(records), "--out", str(out),
                           "--tables", "methods,scarce", "--data-dir", str(tmp_path / "data")], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in out.iterdir()) == ["methods.csv", "methods.md", "scarce.csv", "scarce.md"]
    assert "scarce: 2 of 84 cells run" in proc.stdout and "methods: 1 of 84 cells run" in proc.stdout
    csv = pd.read_csv(out / "scarce.csv")
    assert list(csv.columns) == CSV_COLUMNS
    md = (out / "scarce.md").read_text(encoding="utf-8")
    tsm = next(line for line in md.splitlines() if line.startswith("| TSM (KD + PM + ABM + GM: all), p = 0.1 |"))
    assert "best 0.1000 ± 0.0000 [0.1000, 0.1000] (2)" in tsm
    # --data-dir holds no data: the datasets without any record are "data missing", pole (with records) is not
    pole = 1 + SPECS["scarce"]["datasets"].index("pole")
    kd = next(line for line in md.splitlines() if line.startswith("| KD (base, real rows), p = 0.1 |"))
    cells = kd.strip("| ").split(" | ")[1:]
    assert cells[pole - 1] == "not run" and cells.count("not run (data missing)") == len(cells) - 1


# ----------------------------------------------------------------------- specs

def test_specs_are_declared_once_and_checked():
    methods, scarce = SPECS["methods"], SPECS["scarce"]
    assert [c["variant"] for c in methods["columns"]] == [
        "random-0", "generator-decreasing", "direct-decreasing", "soft_target-decreasing",
        "soft_target_output-decreasing", "de_tabular-decreasing"]
    assert methods["students"] == ["mlp25", "mlp50"] and "ctscan" in methods["datasets"]
    assert scarce["students"] == ["mlp50"] and len(scarce["datasets"]) == 6 and "ctscan" not in scarce["datasets"]
    assert {c["variant"] for c in scarce["columns"]} >= {"tsm-1-p0.1", "kd-1-p0.01", "direct_real-decreasing-p0.1",
                                                          "direct-decreasing"}
    assert len(scarce["columns"]) == 6 * 2 + 2
    bad = dict(TINY, references=["generator-1"])
    with pytest.raises(ConfigError, match="generator-1, not a column's variant") as info:
        validate_benchmark(bad, "experiments/tiny.py")
    assert "\n" not in str(info.value) and "experiments/tiny.py" in str(info.value)
    assert fraction_variant("tsm-1", 0.1) == fraction_variant("tsm-1-p0.1", 0.1) == "tsm-1-p0.1"
    assert fraction_variant("direct-decreasing", 0) == fraction_variant("direct-decreasing", None) == \
        "direct-decreasing"


def test_fraction_suffix_is_the_records_own():
    import dataclasses

    if "real_fraction" not in {f.name for f in dataclasses.fields(Record)}:
        pytest.skip("dfkd.records.Record has no real_fraction field yet (another engineer's task)")
    for p in (0.01, 0.1, 0.25):
        rec = Record(dataset="pole", method="tsm", alpha="1", student="mlp50", seed=1, real_fraction=p,
                     real_rows=int(5000 * p))
        assert rec.variant == fraction_variant("tsm-1", p)


# ---------------------------------------------------------------- presets, make

def compose(overrides, hydra_cfg=False):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from dfkd.cli import CONF_DIR

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return hydra_compose("config", overrides=overrides, return_hydra_config=hydra_cfg)


def sweep_jobs(preset: str, command_line: list[str]) -> list[dict]:
    """The jobs of ``python -m dfkd.distill -m experiment=<preset> <command_line>``, as Hydra's basic sweeper makes
    them (the preset's sweeper params, then the command line's, which win for the same key)."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    params = compose([f"experiment={preset}", "data_mirror=null"], hydra_cfg=True).hydra.sweeper.params
    overrides = OverridesParser.create().parse_overrides([f"{k}={v}" for k, v in params.items()] + command_line)
    batches = BasicSweeper.split_arguments(overrides, None)
    return [dict(o.split("=", 1) for o in job) for batch in batches for job in batch]


def make_steps(target: str) -> list[list[str]]:
    """The ``dfkd.distill`` command lines of ``make -n <target>``, as argument lists after the preset."""
    proc = subprocess.run(["make", "-n", "--no-print-directory", target], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    steps = []
    for line in proc.stdout.splitlines():
        if "-m dfkd.distill -m" in line:
            args = line.split("-m dfkd.distill -m", 1)[1].split()
            assert args[0] == f"experiment={target}", line
            steps.append(args[1:])
    return steps, proc.stdout


def spec_cells(spec: dict) -> list[tuple]:
    return sorted((ds, st, v) for ds in spec["datasets"] for st in spec["students"]
                  for v in [c["variant"] for c in spec["columns"]])


def job_cells(jobs: list[dict], default_student: str) -> list[tuple]:
    return sorted((j["dataset"], j.get("student", default_student),
                   fraction_variant(j["variant"], float(j.get("real_fraction", 0)))) for j in jobs)


def test_methods_preset_sweeps_what_its_spec_declares():
    cfg = compose(["experiment=methods", "data_mirror=null"], hydra_cfg=True)
    assert cfg.experiment_name == "methods" and cfg.seeds == 10 and cfg.epochs == 2000 and cfg.missing_data == "skip"
    assert cfg.hydra.launcher._target_.endswith("JoblibLauncher")
    steps, _ = make_steps("methods")
    assert steps == [[]]
    jobs = sweep_jobs("methods", [])
    assert job_cells(jobs, cfg.student.name) == spec_cells(SPECS["methods"])  # each once, nothing else


def test_scarce_preset_and_its_p0_step_sweep_what_its_spec_declares():
    cfg = compose(["experiment=scarce", "data_mirror=null"], hydra_cfg=True)
    assert cfg.experiment_name == "scarce" and cfg.student.name == "mlp50" and cfg.seeds == 10
    assert cfg.missing_data == "skip"
    steps, _ = make_steps("scarce")
    assert len(steps) == 2 and steps[0] == []  # the preset's sweep, then its p = 0 references
    jobs = [job for step in steps for job in sweep_jobs("scarce", step)]
    assert len(jobs) == 6 * (6 * 2 + 2)
    assert job_cells(jobs, "mlp50") == spec_cells(SPECS["scarce"])  # each cell once, p = 0 ones included
    assert sorted(float(v) for v in {j["real_fraction"] for j in jobs}) == [0.0] + SPECS["scarce"]["fractions"]


@pytest.mark.parametrize("preset", ["methods", "scarce"])
def test_every_job_of_the_presets_composes_and_validates(preset):
    from omegaconf import OmegaConf

    from dfkd.cli import options
    from dfkd.settings import settings_from_dict

    steps, _ = make_steps(preset)
    jobs = [job for step in steps for job in sweep_jobs(preset, step)]
    missing = sorted({j["variant"] for j in jobs} - set(options("variant")))
    if missing:
        pytest.skip(f"conf/variant/{{{','.join(missing)}}}.yaml not written yet (another engineer's task)")
    if any("real_fraction" in j for j in jobs) and "real_fraction" not in compose(["data_mirror=null"]):
        pytest.skip("conf/config.yaml has no real_fraction key yet (another engineer's task)")
    seen = set()
    for job in jobs:
        key = (job["variant"], job.get("student"), job.get("real_fraction"))
        if key in seen:  # the datasets compose alike
            continue
        seen.add(key)
        cfg = compose([f"experiment={preset}", "data_mirror=null"] + [f"{k}={v}" for k, v in job.items()])
        settings_from_dict(OmegaConf.to_container(cfg, resolve=True))
        assert cfg.get("real_fraction", 0) == float(job.get("real_fraction", 0))


def test_the_reused_cells_have_the_table_cells_config_hash():
    # The presets' comments promise that the Table 3/4 cells they share are not retrained: same config hash.
    from omegaconf import OmegaConf

    from dfkd.cell import cell_hash
    from dfkd.settings import settings_from_dict

    def hashed(overrides):
        cfg = compose(overrides + ["dataset=pole", "data_mirror=null"])
        return cell_hash(settings_from_dict(OmegaConf.to_container(cfg, resolve=True)), 1, 50)

    table4 = hashed(["experiment=table4", "variant=direct-decreasing"])
    assert hashed(["experiment=methods", "variant=direct-decreasing", "student=mlp50"]) == table4
    assert hashed(["experiment=methods", "variant=random-0", "student=mlp25"]) == \
        hashed(["experiment=table3", "variant=random-0"])
    if "real_fraction" not in compose(["data_mirror=null"]):
        pytest.skip("conf/config.yaml has no real_fraction key yet (another engineer's task)")
    assert hashed(["experiment=scarce", "variant=direct-decreasing", "real_fraction=0"]) == table4


def test_make_targets_exist_and_are_listed():
    for target in ("methods", "scarce"):
        steps, out = make_steps(target)
        assert "dfkd.teachers" in out  # the teachers prerequisite
        assert f"-m dfkd.report --tables {target}" in out.splitlines()[-1]
    makefile = (ROOT / "Makefile").read_text()
    phony = next(line for line in makefile.splitlines() if line.startswith(".PHONY:")).split()
    assert {"methods", "scarce"} <= set(phony)
    help_text = subprocess.run(["make", "help"], cwd=ROOT, capture_output=True, text=True, timeout=60).stdout
    assert re.search(r"make methods\s+\S", help_text) and re.search(r"make scarce\s+\S", help_text)


# ----------------------------------------------------------------------- end to end

@pytest.mark.data
def test_tiny_cells_of_every_new_method_write_rows_of_both_tables(tmp_path, data_mirror):
    """Real (tiny) cells of the new methods, trained and recorded by the cell, appear as rows of the two tables."""
    from conftest import tiny_settings
    from dfkd.cell import run_cell

    tiny = ["dataset=cpusmall", "seeds=2", "epochs=3", "steps_per_epoch=2", "teacher.max_epochs=3", "progress=false"]
    cells = [["variant=random-0"], ["variant=soft_target-decreasing", "method.size=50", "method.steps=3"],
             ["variant=de_tabular-decreasing"], ["variant=tsm-1", "real_fraction=0.01"],
             ["variant=kd-1", "real_fraction=0.01"], ["variant=direct_real-decreasing", "real_fraction=0.01"]]
    for extra in cells:
        assert run_cell(tiny_settings(tmp_path, data_mirror, tiny + extra), log=lambda *_: None)["status"] == "done"
    df = load_records(tmp_path / "results" / "records")
    assert len(df) == 2 * len(cells)
    for name, labels in (("methods", ["Soft targets (Wang 2021)", "Differential evolution", "Random sampling"]),
                         ("scarce", ["TSM (KD + PM + ABM + GM: all), p = 0.01", "KD (base, real rows), p = 0.01",
                                     "Direct optimizer + real rows; decreasing α, p = 0.01"])):
        md_path, csv_path, _ = write_benchmark(df, SPECS[name], tmp_path / "tables")
        text = md_path.read_text(encoding="utf-8")
        lines = text[text.index("## Student mlp50"):].splitlines()
        for label in labels:
            row = next(line for line in lines if line.startswith(f"| {label}"))
            cpusmall = row.strip("| ").split(" | ")[1 + SPECS[name]["datasets"].index("cpusmall")]
            assert "(2)" in cpusmall, (name, label, cpusmall)  # both seeds' numbers, not "not run"
        csv = pd.read_csv(csv_path)
        assert (csv["dataset"] == "cpusmall").any() and np.isfinite(csv["mean"].dropna()).all()
