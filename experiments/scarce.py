"""Scarce real data (Kang & Kang 2024, "Knowledge distillation with insufficient training data for regression",
EAAI 132 (2024) 108001): the student MLP 50 distilled with only a fraction p of the training rows (with their
labels), p = 1 % and 10 %, six datasets, 10 seeds, against data-free direct optimization (p = 0).

Regenerate: ``make scarce`` (trains what is missing, then reports), or from existing records
``python -m dfkd.report --tables scarce``. Output: ``results/tables/scarce.md`` and ``scarce.csv``.
The preset ``conf/experiment/scarce.yaml`` sweeps the p > 0 columns; the p = 0 references (the Table 4 cells of direct
optimization and random sampling) are a second step of ``make scarce`` (the yaml explains why), and
``tests/test_benchmark.py`` checks that both steps together run exactly these columns.

Besides the paired statistics of every benchmark, the table shows the RMSE reduction of TSM against base KD at the
same p, averaged over the datasets, beside the paper's: "with 10 % of the training data, RMSE falls by 43.91 % on
average against existing KD methods" (the paper's comparison is against its KD baselines; ours against base KD).
"""

from experiments._benchmark import DIRECT_REAL, KD, KD_ABM, KD_GM, KD_PM, TSM, at_fraction, data_free
from experiments._tabular import DATASETS as TABULAR_DATASETS
from experiments._tabular import DIRECT_DECREASING, RANDOM

#: Fractions p of the training rows the students may use (config ``real_fraction``).
FRACTIONS = [0.01, 0.1]
#: The methods run at each fraction.
METHODS = [KD, KD_PM, KD_ABM, KD_GM, TSM, DIRECT_REAL]
#: The six datasets of Tables 3/4 whose data is available offline (ctscan's file is not).
DATASETS = [d for d in TABULAR_DATASETS if d != "ctscan"]

BENCHMARK = dict(
    name="scarce",
    title="Scarce real data (Kang & Kang 2024): test RMSE of students MLP 50 with a fraction p of the training rows",
    students=["mlp50"],
    datasets=DATASETS,
    fractions=FRACTIONS,
    # p = 0.01 block, p = 0.1 block, then the data-free references (p = 0: the Table 4 cells).
    columns=[at_fraction(m, p) for p in FRACTIONS for m in METHODS] + [data_free(DIRECT_DECREASING), data_free(RANDOM)],
    # Every column is tested, seed by seed, against base KD at its own p, direct optimization and random sampling.
    references=[dict(variant=KD["variant"], same_fraction=True), DIRECT_DECREASING["variant"], RANDOM["variant"]],
    reductions=[
        dict(a=TSM["variant"], b=KD["variant"], same_fraction=True, label="TSM against base KD (same p)",
             paper={0.1: 43.91},
             paper_text="with 10 % of the training data, RMSE falls by 43.91 % on average against existing KD methods"),
        dict(a=TSM["variant"], b=DIRECT_DECREASING["variant"], same_fraction=False,
             label="TSM against direct optimization without data (p = 0)"),
    ],
)
