"""Paper Figure 8: student loss on the synthetic rows x_g against epoch, for the two alpha = 1 variants.

Regenerate from records (never trains): ``make fig8`` (``python -m dfkd.report --figures fig8``). Each
run's trace file holds the mean of (T(x_g) - S(x_g))^2 over each epoch's 10 steps (``loss_g``); a line is
the median over seeds and the band their range, after Savitzky-Golay smoothing (window 15, as Figure 7).
The losses span up to eight orders of magnitude (the generator's rows at times collapse to where the
student already matches the teacher), so the axis is logarithmic and the filter runs on log10 of the loss.
"""

from experiments.table4 import TABLE

FIGURE = dict(
    name="fig8",
    title="Figure 8: student loss on synthetic data $x_g$ against training epochs (α = 1, student MLP 50)",
    kind="trace_curves",
    datasets=TABLE["datasets"],
    student=TABLE["student"],
    # Table 4's alpha = 1 columns, both drawn solid (no dashes needed with two lines).
    columns=[dict(col, dash="-") for col in TABLE["columns"] if col["variant"] in ("generator-1", "direct-1")],
    trace="loss_g",
    ylabel="mean $(T(x_g) - S(x_g))^2$ per epoch\n(squared target std)",
    smooth=15,
    polyorder=2,
    log_y=True,
    band=True,
)
