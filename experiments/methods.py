"""Benchmark of data-free methods: test RMSE of students MLP 25 and MLP 50 on the tabular datasets of Tables 3/4,
10 seeds, with paired statistics (Wilcoxon signed-rank over seeds against random sampling and against direct
optimization, wins/ties/losses, average ranks) for the best-validation and the last-epoch (data-free) student.

Regenerate: ``make methods`` (trains what is missing, then reports), or from existing records
``python -m dfkd.report --tables methods``. Output: ``results/tables/methods.md`` and ``methods.csv``.
The preset ``conf/experiment/methods.yaml`` sweeps these columns' variants, these datasets and both students
(``tests/test_benchmark.py`` checks that they match). Random sampling, the generator and direct optimization with
decreasing α are the cells of Tables 3 and 4: records made by ``make table3`` / ``make table4`` are reused.
"""

from experiments._benchmark import DE_TABULAR, SOFT_TARGET, SOFT_TARGET_OUTPUT
from experiments._tabular import DATASETS, DIRECT_DECREASING, GENERATOR_DECREASING, RANDOM

BENCHMARK = dict(
    name="methods",
    title="Methods benchmark: test RMSE of data-free distillation, students MLP 25 and MLP 50",
    students=["mlp25", "mlp50"],
    datasets=DATASETS,
    columns=[RANDOM, GENERATOR_DECREASING, DIRECT_DECREASING, SOFT_TARGET, SOFT_TARGET_OUTPUT, DE_TABULAR],
    # Every column is tested, seed by seed, against each of these.
    references=[RANDOM["variant"], DIRECT_DECREASING["variant"]],
)
