"""Paper Table 5: MNIST as regression, test MAE and RMSE of the CNN student (f = 5).

Regenerate: ``make table5`` (trains, then reports), or from existing records
``python -m dfkd.report --tables table5``. Output: ``results/tables/table5.md``
and ``table5.csv``.

Paper numbers are mean and std over 5 runs on the 10000 test images (digit
units), as printed in the paper's Table 5; the teacher is a single network
(no spread given). Our generator and direct optimization use decreasing alpha
and random sampling alpha 0 (our choices; see conf/variant/mnist_*.yaml).
"""

_COLUMNS = [
    ("Teacher", None),
    ("Random sampling", "random/0"),
    ("Generator", "generator_mnist/decreasing"),
    ("Direct optimizer", "direct_mnist/decreasing"),
]

# Per metric, values in the order of _COLUMNS: (mean, std); std None where the paper gives none.
_PAPER = {
    "MAE": [(0.157, None), (1.554, 0.014), (2.422, 0.027), (1.179, 0.132)],
    "RMSE": [(0.165, None), (2.872, 0.063), (2.880, 0.028), (1.978, 0.143)],
}

TABLE = dict(
    name="table5",
    title="Table 5: MNIST as regression, test MAE and RMSE, student CNN f = 5",
    student="cnn5",
    metric="test_mae",
    metrics=[("MAE", "test_mae"), ("RMSE", "test_rmse")],
    columns=_COLUMNS,
    datasets=["mnist"],
    paper={"mnist": {metric: {label: cell for (label, _), cell in zip(_COLUMNS, row)}
                     for metric, row in _PAPER.items()}},
    claims=[
        dict(kind="beats", a="direct_mnist/decreasing", b="random/0",
             text="Direct optimization beats random sampling", spec="clearly"),
        dict(kind="beats", a="direct_mnist/decreasing", b="generator_mnist/decreasing",
             text="Direct optimization beats the generator", spec="clearly"),
    ],
    note="One teacher (seed 0) is shared by every run, so the Teacher cell's spread is 0 by construction.",
)
