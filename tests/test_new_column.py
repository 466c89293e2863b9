"""Issue 13.3, "one list per name": a new method reaches a table and a figure legend with no other edit.

In a temporary folder: one ``.py`` (a ``Method`` subclass), one method yaml (in a config folder Hydra adds to
its search path) and one line appended to a copy of the real ``experiments/table4.py``, the spec Figure 7 takes
its columns from. A tiny cell of the new method writes its records under the column's one name
(``<method>-<alpha label>``, here ``scaled-1``); the table rendered from the copied specs has the new column,
and Figure 7 drawn from them has the new label in its legend. Nothing else is edited.
"""

from __future__ import annotations

import json
import shutil

from conftest import tiny_settings

from dfkd.core.paths import EXPERIMENTS_DIR

METHOD_PY = '''
from dfkd.methods.base import Method


class ScaledRandom(Method):
    """A throwaway method for a test: twice the base distribution's draws."""

    name = "scaled"

    def sample(self, m):
        return 2.0 * self.base(m)
'''

LABEL = "Scaled random sampling"
SPEC_LINE = f'TABLE["columns"].append(dict(variant="scaled-1", label="{LABEL}", color="#2ca02c", dash="-"))\n'


def legend_texts(fig) -> list[str]:
    legends = list(fig.legends) + [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None]
    return [text.get_text() for legend in legends for text in legend.get_texts()]


def test_a_new_method_reaches_a_table_and_a_figure_legend_with_no_other_edit(tmp_path, data_mirror, monkeypatch):
    from dfkd.cell import run_cell
    from dfkd.report import load_records, render_markdown, summarize
    from dfkd.report.figures import draw_trace_curves, load_figure_specs, trace_series, write_figure
    from dfkd.report.tables import load_table_specs

    # 1. one .py
    code = tmp_path / "code"
    code.mkdir()
    (code / "scaled_random.py").write_text(METHOD_PY)
    monkeypatch.syspath_prepend(str(code))
    # 2. one yaml, in a config folder on Hydra's search path
    conf = tmp_path / "conf"
    (conf / "method").mkdir(parents=True)
    (conf / "method" / "scaled.yaml").write_text("name: scaled\n_target_: scaled_random.ScaledRandom\n")
    # 3. one line in a table spec (a copy of the real experiments/)
    experiments = tmp_path / "experiments"
    shutil.copytree(EXPERIMENTS_DIR, experiments, ignore=shutil.ignore_patterns("__pycache__"))
    with open(experiments / "table4.py", "a", encoding="utf-8") as fh:
        fh.write(SPEC_LINE)

    settings = tiny_settings(tmp_path, data_mirror, [
        f"hydra.searchpath=[file://{conf}]", "dataset=cpusmall", "student=mlp50", "method=scaled", "alpha=one",
        "teacher.max_epochs=2", "seeds=1", "epochs=4", "steps_per_epoch=2", "progress=false"])
    out = run_cell(settings, log=lambda *_: None)
    assert out["status"] == "done" and out["ran"] == [1]
    records = tmp_path / "results" / "records"
    folder = records / "cpusmall" / "mlp50" / "scaled-1"  # the column's one name is the records' folder ...
    assert [json.loads(p.read_text())["variant"] for p in folder.glob("seed*.json")] == ["scaled-1"]  # ... and field

    df = load_records(records)
    table = load_table_specs(experiments)["table4"]
    md = render_markdown(summarize(df, table), table, {})
    header = next(line for line in md.splitlines() if line.startswith("| Dataset |"))
    assert header.split(" | ")[-1] == f"{LABEL} |"
    row = next(line for line in md.splitlines() if line.startswith("| cpusmall |"))
    assert row.rstrip(" |").endswith("(1)")  # the new column's cell: one seed run, no paper number
    assert sum(f"| {LABEL} |" in line for line in md.splitlines()) == 2  # main table and the data-free section

    fig7 = load_figure_specs(experiments)["fig7"]
    assert fig7["columns"][-1]["label"] == LABEL
    fig, _ = draw_trace_curves(trace_series(df, fig7), fig7)
    assert legend_texts(fig) == [LABEL]  # the only column with records
    import matplotlib.pyplot as plt

    plt.close(fig)
    paths, drawn = write_figure(df, fig7, tmp_path / "figures")
    assert drawn == 1 and all(p.is_file() for p in paths)
    # the shipped specs are untouched
    assert LABEL not in (EXPERIMENTS_DIR / "table4.py").read_text()
    assert "scaled" not in {c["variant"].split("-")[0] for c in load_table_specs()["table4"]["columns"] if c["variant"]}
