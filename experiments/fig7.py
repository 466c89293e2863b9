"""Paper Figure 7: validation RMSE against epoch, student MLP 50, one panel per dataset, one line per variant.

Regenerate from records (never trains): ``make fig7`` (``python -m dfkd.report --figures fig7``; the
committed full run: ``--records results/reference/records --figures-out results/reference/figures``).
Each run's trace file holds its validation RMSE after every epoch; a line is the median over seeds of
the curves smoothed by a Savitzky-Golay filter of window 15 (paper: "window size of 15 epochs"; the
polynomial order, 2, is our choice), on a log axis so that the late epochs, where the variants differ,
stay readable.
"""

from experiments.table4 import TABLE

FIGURE = dict(
    name="fig7",
    title="Figure 7: validation RMSE against training epochs (student MLP 50)",
    kind="trace_curves",
    datasets=TABLE["datasets"],
    student=TABLE["student"],
    columns=[col for col in TABLE["columns"] if col["variant"]],  # Table 4's columns: a column added there is drawn
    trace="val_rmse",
    ylabel="validation RMSE (target std)",
    smooth=15,
    polyorder=2,
    log_y=True,
)
