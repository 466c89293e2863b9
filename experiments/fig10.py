"""Paper Figure 10: histograms of the teacher's predictions on a batch of 50 synthetic images per method.

Regenerate from records: ``make fig10`` (``python -m dfkd.report --figures fig10``); output
``results/figures/fig10.png`` and ``.pdf``. The batch is the one each Table 5 run keeps after
training (the lowest seed's).
"""

from experiments.table5 import TABLE

FIGURE = dict(
    name="fig10",
    title="Figure 10: teacher's predictions on 50 synthetic images per method",
    kind="prediction_hist",
    dataset=TABLE["datasets"][0],
    student=TABLE["student"],
    columns=[col for col in TABLE["columns"] if col["variant"]],  # Table 5's methods
)
