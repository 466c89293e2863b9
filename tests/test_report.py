"""Tests of the reporting layer (dfkd.report) on fabricated records."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
# The package may not be installed in the venv; the tests run against this checkout.
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from dfkd.report import (  # noqa: E402
    RECORD_FIELDS,
    RecordWarning,
    evaluate_claims,
    fidelity,
    load_records,
    render_markdown,
    summarize,
    write_table,
)
from dfkd.report.tables import SUMMARY_COLUMNS, load_table_specs  # noqa: E402

SPEC = dict(
    name="tiny",
    title="Tiny table",
    student="mlp25",
    columns=[
        dict(variant=None, label="Teacher", paper={"a": (0.2, 0.05), "b": (0.1, 0.01), "c": (0.1, 0.01)}),
        dict(variant="random-0", label="Random", paper={"a": (0.2, 0.05), "b": (0.3, 0.01), "c": (0.3, 0.01)}),
        dict(variant="direct-decreasing", label="Direct", paper={"a": (0.2, 0.05), "b": (0.2, 0.01), "c": (0.2, 0.01)}),
    ],
    datasets=["a", "b", "c"],
)


def write_record(root: Path, *, dataset="a", variant="random-0", seed=1, student="mlp25",
                 status="ok", test_rmse=0.2, teacher_test_rmse=0.1, test_rmse_last=None,
                 experiment="table3", created="2024-01-01T00:00:00", name=None):
    """Write one schema-1 record; fields not under test get plausible values."""
    method, alpha = variant.rsplit("-", 1)
    rec = dict(
        schema=1, kind="distill", experiment=experiment, dataset=dataset, method=method,
        alpha=alpha, variant=variant, student=student, student_hidden=int(student[3:]),
        seed=seed, status=status, failure_reason=None if status == "ok" else "diverged",
        test_rmse=test_rmse, test_mae=test_rmse, test_rmse_last=test_rmse_last if test_rmse_last is not None
        else test_rmse, best_epoch=10, val_rmse_best=test_rmse, teacher_test_rmse=teacher_test_rmse,
        teacher_val_rmse=teacher_test_rmse, teacher_epochs=70, epochs=2000, epochs_run=2000,
        steps_per_epoch=10, batch_size=100, wall_time_s=1.0, config_hash="abc", git_commit="def",
        device="cpu", created=created,
    )
    path = root / dataset / student / variant / (name or f"seed{seed:02d}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rec))
    return path


def cell(summary, dataset, column):
    rows = summary[(summary["dataset"] == dataset) & (summary["column"] == column)]
    assert len(rows) == 1
    return rows.iloc[0]


# ------------------------------------------------------------------------- records

def test_load_records_recursive_and_skips_corrupted(tmp_path):
    write_record(tmp_path, seed=1)
    write_record(tmp_path, dataset="b", seed=2)
    bad = tmp_path / "deep" / "er" / "bad.json"
    bad.parent.mkdir(parents=True)
    bad.write_text('{"schema": 1, "test_rmse": ')
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.warns(RecordWarning) as caught:
        df = load_records(tmp_path)
    messages = [str(w.message) for w in caught]
    assert len(messages) == 2
    assert any("bad.json" in m for m in messages) and any("list.json" in m for m in messages)
    assert all("\n" not in m for m in messages)
    assert len(df) == 2
    assert set(RECORD_FIELDS) <= set(df.columns)
    assert sorted(df["seed"]) == [1, 2]
    assert len(df.attrs["skipped"]) == 2


def test_load_records_missing_root_gives_empty_frame(tmp_path):
    df = load_records(tmp_path / "nowhere")
    assert df.empty
    assert set(RECORD_FIELDS) <= set(df.columns)
    summary = summarize(df, SPEC)
    assert (summary["n_ok"] == 0).all() and summary["mean"].isna().all()


# ----------------------------------------------------------------------- summarize

def test_mean_population_std_and_z(tmp_path):
    for seed, value in zip([1, 2, 3], [0.1, 0.2, 0.4]):
        write_record(tmp_path, seed=seed, test_rmse=value)
    summary = summarize(load_records(tmp_path), SPEC)
    c = cell(summary, "a", "Random")
    mean = (0.1 + 0.2 + 0.4) / 3
    pop_std = math.sqrt(((0.1 - mean) ** 2 + (0.2 - mean) ** 2 + (0.4 - mean) ** 2) / 3)
    assert c.n_ok == 3 and c.n_failed == 0
    assert c["mean"] == pytest.approx(mean)
    assert c["std"] == pytest.approx(pop_std)
    assert c.z == pytest.approx((mean - 0.2) / 0.05)
    assert list(summary.columns) == SUMMARY_COLUMNS
    assert len(summary) == len(SPEC["datasets"]) * len(SPEC["columns"])


def test_teacher_uses_one_value_per_seed(tmp_path):
    # Seed 1 appears in two variants, seed 2 in one: a per-record mean would be 0.1667.
    write_record(tmp_path, seed=1, variant="random-0", teacher_test_rmse=0.1)
    write_record(tmp_path, seed=1, variant="direct-decreasing", teacher_test_rmse=0.1)
    write_record(tmp_path, seed=2, variant="random-0", teacher_test_rmse=0.3)
    c = cell(summarize(load_records(tmp_path), SPEC), "a", "Teacher")
    assert c.n_ok == 2
    assert c["mean"] == pytest.approx(0.2)
    assert c["std"] == pytest.approx(0.1)


def test_failed_records_counted_not_averaged(tmp_path):
    for seed in (1, 2, 3):
        write_record(tmp_path, seed=seed, test_rmse=0.2)
    write_record(tmp_path, seed=4, test_rmse=99.0, status="failed")
    summary = summarize(load_records(tmp_path), SPEC)
    c = cell(summary, "a", "Random")
    assert (c.n_ok, c.n_failed) == (3, 1)
    assert c["mean"] == pytest.approx(0.2)
    assert "0.2000 ± 0.0000 (3, 1 failed)" in render_markdown(summary, SPEC, {})


def test_rerun_supersedes_failed_record(tmp_path):
    write_record(tmp_path, seed=1, status="failed", created="2024-01-01T00:00:00", name="old.json")
    write_record(tmp_path, seed=1, test_rmse=0.25, created="2024-01-02T00:00:00", name="new.json")
    c = cell(summarize(load_records(tmp_path), SPEC), "a", "Random")
    assert (c.n_ok, c.n_failed) == (1, 0)
    assert c["mean"] == pytest.approx(0.25)


def test_other_students_and_kinds_ignored(tmp_path):
    write_record(tmp_path, seed=1, test_rmse=0.2)
    write_record(tmp_path, seed=2, student="mlp50", test_rmse=0.9)
    p = write_record(tmp_path, seed=3, test_rmse=0.9)
    rec = json.loads(p.read_text())
    rec["kind"] = "teacher"
    p.write_text(json.dumps(rec))
    c = cell(summarize(load_records(tmp_path), SPEC), "a", "Random")
    assert c.n_ok == 1 and c["mean"] == pytest.approx(0.2)


# -------------------------------------------------------------------------- render

def test_not_run_vs_data_missing(tmp_path):
    write_record(tmp_path, dataset="c", seed=1)
    summary = summarize(load_records(tmp_path), SPEC)
    md = render_markdown(summary, SPEC, {"a": True, "b": False})
    main_table = md.split("**Fidelity")[0]
    rows = {line.split(" | ")[0].lstrip("| "): line for line in main_table.splitlines() if line.startswith("| ")}
    assert "not run (data missing)" in rows["b"]
    assert "not run" in rows["a"] and "data missing" not in rows["a"]
    # c has a Random record but no Direct one: plain "not run", whatever the data status.
    assert "not run" in rows["c"] and "data missing" not in rows["c"]
    assert "paper 0.3000 ± 0.0100" in rows["c"]


def test_fidelity_and_flag(tmp_path):
    write_record(tmp_path, dataset="a", seed=1, test_rmse=0.21, teacher_test_rmse=0.2)  # z = +0.2
    write_record(tmp_path, dataset="b", seed=1, test_rmse=0.35, teacher_test_rmse=0.1)  # z = +5.0
    summary = summarize(load_records(tmp_path), SPEC)
    fid = fidelity(summary)
    assert (fid["within"], fid["n_run"], fid["n_cells"]) == (3, 4, 9)
    assert [(d, c) for d, c, _ in fid["outside"]] == [("b", "Random")]
    md = render_markdown(summary, SPEC, {})
    assert "0.2100 ± 0.0000 (1)<br>paper 0.2000 ± 0.0500 · +0.2σ" in md
    assert "**+5.0σ**" in md
    assert "3 of 4 run cells within 2 paper stds" in md and "b / Random (+5.0σ)" in md


def test_quick_label_and_source_line(tmp_path):
    write_record(tmp_path, seed=1, experiment="quick")
    md = render_markdown(summarize(load_records(tmp_path), SPEC), SPEC, {})
    assert "quick: reduced budget, not comparable to the paper" in md
    assert f"1 records for student mlp25 (of 1) under `{tmp_path}`" in md


def test_claims_on_known_case(tmp_path):
    table3 = load_table_specs()["table3"]
    ours = {  # one seed each; direct-decreasing loses to random only on cpusmall
        "compactiv": {"random-0": 0.16, "direct-decreasing": 0.15, "generator-decreasing": 0.16, "generator-1": 0.168},
        "cpusmall": {"random-0": 0.18, "direct-decreasing": 0.19, "generator-decreasing": 0.20, "generator-1": 0.20},
        "mv": {"random-0": 0.025, "direct-decreasing": 0.024, "generator-decreasing": 0.025, "generator-1": 0.030},
    }
    for dataset, values in ours.items():
        for variant, value in values.items():
            write_record(tmp_path, dataset=dataset, variant=variant, seed=1, test_rmse=value)
    summary = summarize(load_records(tmp_path), table3)
    claims = {(c["a"], c["b"]): c for c in evaluate_claims(summary, table3)}

    vs_random = claims[("direct-decreasing", "random-0")]
    assert (vs_random["k"], vs_random["n"]) == (2, 3)
    # Paper on compactiv, cpusmall, mv: direct wins on the first two, loses on mv.
    assert (vs_random["paper_k"], vs_random["paper_n"]) == (2, 3)
    assert (vs_random["paper_k_all"], vs_random["paper_n_all"]) == (6, 7)

    vs_gen = claims[("direct-decreasing", "generator-decreasing")]
    assert (vs_gen["k"], vs_gen["n"]) == (3, 3)
    assert (vs_gen["paper_k_all"], vs_gen["paper_n_all"]) == (5, 7)

    gen = claims[("generator-1", "generator-decreasing")]
    assert (gen["k"], gen["n"]) == (2, 3)  # cpusmall equal: not worse
    assert gen["median_pct"] == pytest.approx(5.0)  # of +5 %, 0 %, +20 %
    paper_same = sorted([(0.1693 - 0.1606) / 0.1606, (0.1918 - 0.1875) / 0.1875, (0.0428 - 0.0255) / 0.0255])
    assert gen["paper_median_pct"] == pytest.approx(100 * paper_same[1])

    # direct-1 not run anywhere: evaluated on nothing, paper still shown.
    direct = claims[("direct-1", "direct-decreasing")]
    assert direct["n"] == 0 and direct["paper_n_all"] == 7

    md = render_markdown(summary, table3, {})
    assert "beats random sampling (SPEC §5: 6 of 7): ours: 2 of 3 datasets run; " \
           "paper on the same datasets: 2 of 3 (paper, all 7 datasets: 6 of 7)" in md
    assert "ours: worse on 2 of 3 datasets run, median change +5.0 %; " \
           "paper on the same datasets: worse on 3 of 3" in md


def test_selection_section_shows_last_epoch(tmp_path):
    write_record(tmp_path, seed=1, test_rmse=0.2, test_rmse_last=0.25)
    summary = summarize(load_records(tmp_path), SPEC)
    assert cell(summary, "a", "Random").last_mean == pytest.approx(0.25)
    md = render_markdown(summary, SPEC, {})
    section = md.split("## Data-free checkpoint selection (SPEC §6)")[1]
    assert "0.2000 / 0.2500 (+25.0 %)" in section


def test_write_table_md_and_csv(tmp_path):
    write_record(tmp_path / "rec", seed=1)
    summary = summarize(load_records(tmp_path / "rec"), SPEC)
    md = render_markdown(summary, SPEC, {})
    md_path, csv_path = write_table(md, summary, tmp_path / "out", "tiny")
    assert md_path.read_text(encoding="utf-8") == md
    assert md.startswith("# Tiny table")
    assert sum(line.startswith(f"| {d} |") for d in SPEC["datasets"] for line in md.splitlines()) == 6
    csv = pd.read_csv(csv_path)
    assert list(csv.columns) == SUMMARY_COLUMNS
    assert len(csv) == 9
    assert csv.set_index(["dataset", "column"]).loc[("a", "Random"), "n_ok"] == 1
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["tiny.csv", "tiny.md"]


def paper_of(spec, label):
    return next(col for col in spec["columns"] if col["label"] == label)["paper"]


def test_paper_numbers_as_printed():
    specs = load_table_specs()
    assert paper_of(specs["table3"], "Random sampling")["indoorloc"] == (0.105, 0.0051)
    assert paper_of(specs["table4"], "Random sampling")["compactiv"] == (0.15534, 0.0077)
    assert paper_of(specs["table5"], "Direct optimizer")["mnist"]["RMSE"] == (1.978, 0.143)
    for spec in specs.values():
        # every column gives the paper's number for every dataset (and metric), keyed by name, not position
        for col in spec["columns"]:
            assert list(col["paper"]) == spec["datasets"], (spec["name"], col["label"])
            if spec.get("metrics"):
                assert all(list(per) == [m for m, _ in spec["metrics"]] for per in col["paper"].values())


def test_paper_cells_print_as_plain_numbers(tmp_path):
    # numpy scalars (as pandas hands them over) once printed as "np.float64(0.15534)"
    table4 = load_table_specs()["table4"]
    md = render_markdown(summarize(load_records(tmp_path / "none"), table4), table4, {})
    assert "paper 0.15534 ± 0.0077" in md and "np." not in md
    table5 = load_table_specs()["table5"]
    assert "np." not in render_markdown(summarize(load_records(tmp_path / "none"), table5), table5, {})


@pytest.mark.parametrize("change,match", [
    (lambda s: s.update(columns=[("Random", "random-0")]), "each column must be dict"),
    (lambda s: s["columns"].append(dict(variant="random-0", label="Again")), "share the variant random-0"),
    (lambda s: s["columns"].append(dict(variant="direct-1", label="Random")), "share the label Random"),
    (lambda s: s["columns"][1].update(paper={"zz": (0.1, 0.1)}), "paper numbers for zz"),
    (lambda s: s.update(claims=[dict(kind="beats", a="direct-1", b="random-0", text="t", spec="s")]),
     "names direct-1, not a column's variant"),
])
def test_bad_specs_are_one_line_config_errors(change, match):
    from dfkd.errors import ConfigError
    from dfkd.report.tables import validate_spec

    spec = dict(SPEC, columns=[dict(c) for c in SPEC["columns"]])
    change(spec)
    with pytest.raises(ConfigError, match=match) as info:
        validate_spec(spec, "experiments/tiny.py")
    assert "\n" not in str(info.value) and "experiments/tiny.py" in str(info.value)


# ----------------------------------------------------------------------------- CLI

def run_cli(*args):
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "dfkd.report", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)


def test_cli_writes_tables_and_warns_on_corrupted(tmp_path):
    records, out = tmp_path / "records", tmp_path / "tables"
    write_record(records, dataset="pole", seed=1, test_rmse=0.28)
    (records / "broken.json").write_text("{not json")
    proc = run_cli("--records", str(records), "--out", str(out), "--tables", "table3",
                   "--data-dir", str(tmp_path / "data"))
    assert proc.returncode == 0, proc.stderr
    assert (out / "table3.md").exists() and (out / "table3.csv").exists()
    assert not (out / "table4.md").exists()
    assert "table3:" in proc.stdout and "within 2 paper stds" in proc.stdout
    warning_lines = [line for line in proc.stderr.splitlines() if "broken.json" in line]
    assert len(warning_lines) == 1 and warning_lines[0].startswith("warning:")
    assert "Traceback" not in proc.stderr
    assert len(pd.read_csv(out / "table3.csv")) == 42


@pytest.mark.parametrize("where", ["missing", "empty", "unreadable"])
def test_cli_refuses_a_records_folder_without_records_and_keeps_the_tables(tmp_path, where):
    records, out = tmp_path / "records", tmp_path / "tables"
    if where != "missing":
        records.mkdir()
    if where == "unreadable":
        (records / "broken.json").write_text("{not json")
    out.mkdir()
    before = {name: f"finished {name}\n".encode() for name in ("table3.md", "table3.csv", "table4.md")}
    for name, data in before.items():
        (out / name).write_bytes(data)
    for args in (["--out", str(out)], ["--figures", "fig9", "--figures-out", str(out)]):
        proc = run_cli("--records", str(records), *args)
        assert proc.returncode == 2
        errors = [line for line in proc.stderr.splitlines() if not line.startswith("warning:")]
        assert len(errors) == 1 and errors[0].startswith("error:") and str(records) in errors[0]
        assert "make quick" in errors[0] and "--records" in errors[0]
        assert "Traceback" not in proc.stderr
        assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_list_datasets_is_what_the_table_specs_declare():
    specs = load_table_specs()
    proc = run_cli("--list-datasets", "table3,table4")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().split(",") == specs["table3"]["datasets"] == specs["table4"]["datasets"]
    assert run_cli("--list-datasets", "table6").stdout.strip() == "protein"


def test_makefile_takes_its_dataset_list_from_the_specs():
    makefile = (ROOT / "Makefile").read_text()
    assert "DATASETS = $(shell $(PY) -m dfkd.report --list-datasets table3,table4)" in makefile
    assert "ctscan" not in makefile  # no hand-written copy of the list
    proc = subprocess.run(["make", "-n", "--no-print-directory", "teachers"], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    line = next(line for line in proc.stdout.splitlines() if "dfkd.teachers" in line)
    assert f"dataset={','.join(load_table_specs()['table3']['datasets'])} " in line


def test_cli_unknown_table_is_one_line_error(tmp_path):
    proc = run_cli("--records", str(tmp_path), "--out", str(tmp_path / "out"), "--tables", "table3,table99")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "table99" in lines[0]
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()


def test_tables_and_figures_are_listed_in_numeric_order():
    from dfkd.report.figures import load_figure_specs
    from dfkd.report.tables import load_table_specs, natural_key

    assert sorted(["fig10", "fig5", "fig9", "table6", "table10"], key=natural_key) == \
        ["fig5", "fig9", "fig10", "table6", "table10"]
    assert list(load_figure_specs()) == [f"fig{i}" for i in range(7, 11)]  # figs 5-6: the study
    assert list(load_table_specs()) == ["table3", "table4", "table5", "table6"]
