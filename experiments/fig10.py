"""Paper Figure 10: histograms of the teacher's predictions on a batch of 50 synthetic images per method.

Regenerate from records: ``make fig10`` (``python -m dfkd.report --figures fig10``); output
``results/figures/fig10.png`` and ``.pdf``. The batch is the one each Table 5 run keeps after
training (the lowest seed's).
"""

FIGURE = dict(
    name="fig10",
    title="Figure 10: teacher's predictions on 50 synthetic images per method",
    kind="prediction_hist",
    dataset="mnist",
    student="cnn5",
    columns=[("Random sampling", "random/0"), ("Generator", "generator_mnist/decreasing"),
             ("Direct optimizer", "direct_mnist/decreasing")],
)
