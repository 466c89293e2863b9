"""Paper Figure 9: synthetic MNIST images made by each method (a small grid per method).

Regenerate from records: ``make fig9`` (``python -m dfkd.report --figures fig9``); output
``results/figures/fig9.png`` and ``.pdf``. The images are the batch each Table 5 run keeps
after training (the lowest seed's), titled with the teacher's prediction.
"""

from experiments.table5 import TABLE

FIGURE = dict(
    name="fig9",
    title="Figure 9: synthetic images per method (title: teacher's prediction)",
    kind="synthetic_grid",
    dataset=TABLE["datasets"][0],
    student=TABLE["student"],
    columns=[col for col in TABLE["columns"] if col["variant"]],  # Table 5's methods
)
