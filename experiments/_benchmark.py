"""What the two benchmark artefacts (``experiments/methods.py``, ``experiments/scarce.py``) share: the columns of the
methods they add to those of Tables 3/4 (``experiments/_tabular.py``), each declared once.

A column is one dict, as in ``_tabular.py``: ``variant`` (the config's ``variant=<name>``, the records' ``variant``
and their folder ``<method>-<alpha label>``), ``label`` (the benchmark's row name) and ``color`` (its line, should a
figure draw it). The scarce-data columns are declared without their fraction of real rows; :func:`at_fraction` makes
one column per fraction, named as its records are: ``<method>-<alpha label>-p<fraction:g>`` (``tsm-1-p0.1``).
"""

from dfkd.report.benchmark import fraction_variant

# ------------------------------------------------------------------ data-free methods (experiments/methods.py)
SOFT_TARGET = dict(variant="soft_target-decreasing", label="Soft targets (Wang 2021); decreasing α", color="#2ca02c",
                   dash="-")
SOFT_TARGET_OUTPUT = dict(variant="soft_target_output-decreasing",
                          label="Soft targets from the output distribution (ours, after Wang 2021); decreasing α", color="#98df8a", dash="-")
DE_TABULAR = dict(variant="de_tabular-decreasing", label="Differential evolution, black-box MLP teacher; decreasing α",
                  color="#9467bd", dash="-")

# ------------------------------------------- scarce real data, Kang & Kang 2024 (experiments/scarce.py)
KD = dict(variant="kd-1", label="KD (base, real rows)", color="#8c564b", dash="-")
KD_PM = dict(variant="kd_pm-1", label="KD + PM", color="#e377c2", dash="-")
KD_ABM = dict(variant="kd_abm-1", label="KD + ABM", color="#bcbd22", dash="-")
KD_GM = dict(variant="kd_gm-1", label="KD + GM", color="#17becf", dash="-")
TSM = dict(variant="tsm-1", label="TSM (KD + PM + ABM + GM: all)", color="#d62728", dash="-")
DIRECT_REAL = dict(variant="direct_real-decreasing", label="Direct optimizer + real rows; decreasing α",
                   color="#1f5fbf", dash="--")


def at_fraction(base: dict, fraction: float) -> dict:
    """``base`` (a column above, without a fraction) run on a fraction ``fraction`` of the training rows: its variant
    gets the records' suffix (``kd-1`` -> ``kd-1-p0.1``), its label the fraction, and it keeps ``base`` (the variant
    it was made from) and ``fraction`` for the report's same-p comparisons."""
    return dict(base, variant=fraction_variant(base["variant"], fraction), label=f"{base['label']}, p = {fraction:g}",
                base=base["variant"], fraction=float(fraction))


def data_free(base: dict) -> dict:
    """``base`` (a data-free column of ``_tabular.py``) as a benchmark of scarce data shows it: labelled p = 0."""
    return dict(base, label=f"{base['label']}, p = 0 (data-free)")
