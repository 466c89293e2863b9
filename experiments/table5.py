"""Paper Table 5: MNIST as regression, test MAE and RMSE of the CNN student (f = 5).

Regenerate: ``make table5`` (trains, then reports), or from existing records
``python -m dfkd.report --tables table5``. Output: ``results/tables/table5.md``
and ``table5.csv``.

Paper numbers are mean and std over 5 runs on the 10000 test images (digit
units), as printed in the paper's Table 5; the teacher is a single network
(no spread given). Our generator and direct optimization use decreasing alpha
and random sampling alpha 0 (our choices; see conf/variant/*_mnist-decreasing.yaml).
"""

# One entry per column: its variant (config, records, folder), its label (table header, Figures 9 and 10),
# and the paper's (mean, std) per metric of each dataset; std None where the paper gives none.
COLUMNS = [
    dict(variant=None, label="Teacher",
         paper={"mnist": {"MAE": (0.157, None), "RMSE": (0.165, None)}}),
    dict(variant="random-0", label="Random sampling",
         paper={"mnist": {"MAE": (1.554, 0.014), "RMSE": (2.872, 0.063)}}),
    dict(variant="generator_mnist-decreasing", label="Generator",
         paper={"mnist": {"MAE": (2.422, 0.027), "RMSE": (2.880, 0.028)}}),
    dict(variant="direct_mnist-decreasing", label="Direct optimizer",
         paper={"mnist": {"MAE": (1.179, 0.132), "RMSE": (1.978, 0.143)}}),
]

TABLE = dict(
    name="table5",
    title="Table 5: MNIST as regression, test MAE and RMSE, student CNN f = 5",
    student="cnn5",
    metric="test_mae",
    metrics=[("MAE", "test_mae"), ("RMSE", "test_rmse")],
    columns=COLUMNS,
    datasets=["mnist"],
    claims=[
        dict(kind="beats", a="direct_mnist-decreasing", b="random-0",
             text="Direct optimization beats random sampling", spec="clearly"),
        dict(kind="beats", a="direct_mnist-decreasing", b="generator_mnist-decreasing",
             text="Direct optimization beats the generator", spec="clearly"),
    ],
    note="One teacher (seed 0) is shared by every run, so the Teacher cell's spread is 0 by construction.",
)
