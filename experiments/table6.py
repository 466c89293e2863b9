"""Paper Table 6: eSol protein solubility, black-box SVR teacher, RBF-100 student (test RMSE).

Regenerate: ``make table6`` (trains, then reports), or from existing records
``python -m dfkd.report --tables table6``. Output: ``results/tables/table6.md``
and ``table6.csv``.

Paper numbers (5 runs, raw solubility in [0, 1], no scaling): teacher 0.250,
random sampling 0.287 +- 0.001, differential evolution 0.267 +- 0.005. The
paper prints the teacher as a single value (deterministic: one fixed split, SVR
with defaults), so no std and no z are shown for it; ours is 0.2437 on the 584 test rows (the notebook
printed 0.2457 on all 648 non-training rows; the paper rounds to 0.250).
The variants are the notebook's: random = 10 random rows per step (alpha 0),
differential evolution = 5 DE rows + 5 random rows weighted equally (alpha 0.5).
The table also shows the teacher queries each run made (DE searches plus
labels).
"""

TABLE = dict(
    name="table6",
    title="Table 6: test RMSE on eSol protein solubility, black-box SVR teacher, student RBF 100",
    student="rbf100",
    metric="test_rmse",
    datasets=["protein"],
    columns=[
        dict(variant=None, label="Teacher", paper={"protein": (0.250, None)}),
        dict(variant="random-0", label="Random sampling", paper={"protein": (0.287, 0.001)}),
        dict(variant="de-0.5", label="Differential evolution", paper={"protein": (0.267, 0.005)}),
    ],
    claims=[dict(kind="beats", a="de-0.5", b="random-0",
                 text="Differential evolution beats random sampling (black-box teacher)", spec="on eSol")],
    extra_fields=[("Teacher queries per run", "teacher_queries")],
)
