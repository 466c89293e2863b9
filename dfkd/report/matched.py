"""Table 5 twice beside the paper: today's run (teacher cnn10) and ``table5_matched`` (the teacher the MNIST
teacher study chose, issue 15).

    python -m dfkd.report.matched                        # the defaults below; part of `make table5-matched`
    python -m dfkd.report.matched --today results/reference/tables/table5.csv \\
        --matched results/table5_matched/tables/table5.csv --out results/tables/table5_matched.md

Both inputs are the ``table5.csv`` summaries ``python -m dfkd.report --tables table5`` writes (mean, population
std, the paper's mean and std, z in paper stds). The output shows, per metric and column, the paper's value and
each run's, how many cells of each run lie within two paper stds, and whether direct optimization's and random
sampling's MAE moved toward the paper's (1.179 and 1.554), with Welch's t-test between the two runs' means (from
the summaries: population std and run count) saying whether the move exceeds the run-to-run spread. Never trains.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from dfkd.errors import ConfigError
from dfkd.records import atomic_write_bytes

Z_OK = 2.0
WATCH = (("Direct optimizer", "MAE"), ("Random sampling", "MAE"))


def read_summary(path) -> pd.DataFrame:
    """A table5.csv summary, indexed by (metric, column).

    Raises:
        ConfigError: the file is missing or lacks the summary's columns.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"no Table 5 summary at {path}: run `python -m dfkd.report --tables table5` for that run "
                          f"first (make table5-matched does)")
    frame = pd.read_csv(path)
    need = {"metric", "column", "mean", "std", "paper_mean", "paper_std", "n_ok"}
    if not need <= set(frame.columns):
        raise ConfigError(f"{path} is not a Table 5 summary: it lacks {', '.join(sorted(need - set(frame.columns)))}")
    return frame.set_index(["metric", "column"])


def _z(row) -> float:
    if not (isinstance(row["paper_std"], float) and math.isfinite(row["paper_std"]) and row["paper_std"] > 0):
        return math.nan
    return (row["mean"] - row["paper_mean"]) / row["paper_std"]


def _cell(row) -> str:
    if row is None or not math.isfinite(row["mean"]):
        return "not run"
    z = _z(row)
    text = f"{row['mean']:.4f} ± {row['std']:.4f} ({int(row['n_ok'])})"
    if math.isfinite(z):
        text += f" · {z:+.1f}σ" + (" ⚠" if abs(z) > Z_OK else "")
    return text


def _welch(a, b) -> str:
    """Welch's t-test between two runs' means, from their summaries (population std, run count), as a clause."""
    n_a, n_b = int(a["n_ok"]), int(b["n_ok"])
    if min(n_a, n_b) < 2:
        return "; too few runs for a test"
    sample_std = lambda row, n: float(row["std"]) * math.sqrt(n / (n - 1))  # noqa: E731  (ddof 0 -> 1)
    test = stats.ttest_ind_from_stats(b["mean"], sample_std(b, n_b), n_b, a["mean"], sample_std(a, n_a), n_a,
                                      equal_var=False)
    verdict = "beyond" if test.pvalue < 0.05 else "within"
    return f"; Welch's t-test p = {test.pvalue:.2g} ({n_a} and {n_b} runs): {verdict} the run-to-run spread"


def render(today: pd.DataFrame, matched: pd.DataFrame, labels=("today (cnn10)", "matched teacher")) -> str:
    """The Markdown page comparing both runs with the paper."""
    keys = list(dict.fromkeys(list(today.index) + list(matched.index)))
    lines = ["# Table 5 with two teachers: today's run and table5_matched, beside the paper", "",
             "Each cell: mean ± population std (runs) and the distance from the paper's mean in paper stds; "
             f"⚠ beyond {Z_OK:g}σ. The matched run's teacher is the one the MNIST teacher study chose "
             "(results/tables/mnist_teachers.md, criterion in conf/mnist_teachers.yaml).", "",
             f"| metric | column | paper | {labels[0]} | {labels[1]} |", "|---|---|---|---|---|"]
    within = {0: [0, 0], 1: [0, 0]}
    for key in keys:
        rows = [frame.loc[key] if key in frame.index else None for frame in (today, matched)]
        ref = next(r for r in rows if r is not None)
        paper = f"{ref['paper_mean']:.4f}" + (f" ± {ref['paper_std']:.4f}" if math.isfinite(ref["paper_std"]) else "")
        for i, r in enumerate(rows):
            z = _z(r) if r is not None else math.nan
            if math.isfinite(z):
                within[i][1] += 1
                within[i][0] += abs(z) <= Z_OK
        lines.append(f"| {key[0]} | {key[1]} | {paper} | {_cell(rows[0])} | {_cell(rows[1])} |")
    lines += ["", f"Within {Z_OK:g} paper stds: {labels[0]} {within[0][0]} of {within[0][1]}, "
                  f"{labels[1]} {within[1][0]} of {within[1][1]}.", ""]
    for column, metric in WATCH:
        key = (metric, column)
        if key in today.index and key in matched.index and math.isfinite(matched.loc[key, "mean"]):
            a, b, p = today.loc[key, "mean"], matched.loc[key, "mean"], today.loc[key, "paper_mean"]
            moved = ("toward" if abs(b - p) < abs(a - p) else "away from" if abs(b - p) > abs(a - p)
                     else "no nearer to")
            lines.append(f"- {column} {metric}: {a:.4f} -> {b:.4f}, {moved} the paper's {p:.3f} "
                         f"(gap {a - p:+.4f} -> {b - p:+.4f}){_welch(today.loc[key], matched.loc[key])}.")
        else:
            lines.append(f"- {column} {metric}: the matched run has no number yet.")
    return "\n".join(lines) + "\n"


# -- random sampling's pair (issue 15, item 3) ----------------------------------------------
PAPER_PAIRS = {"Teacher": (0.157, 0.165), "Random sampling": (1.554, 2.872), "Generator": (2.422, 2.880),
               "Direct optimizer": (1.179, 1.978)}


def pair_readings(y_test, batch_sizes=(32, 50, 100)) -> dict:
    """What readings of the metric can give each paper (MAE, RMSE) pair, from the test labels alone.

    - ``broadcast``: ``mean |p[:, None] - y[None, :]|`` (shapes (n, 1) against (n,)) compares every prediction with
      every label, so for any predictions it is at least ``min_c mean |c - y|`` (the best constant's MAE), and its
      RMSE at least ``std(y)``; a pair below those bounds cannot come from it.
    - ``per_batch``: the mean over batches of per-batch MAE and RMSE, for the best-RMSE constant predictor.
    - ``logcosh``: the smallest mean Log-Cosh of a constant predictor (the loss reported as "MAE").
    - ``two_point``: the error shape the pair needs if errors were 0 or one size a: a = RMSE^2 / MAE, share MAE / a.
    """
    y = np.asarray(y_test, dtype=np.float64)
    cs = np.linspace(0.0, 9.0, 901)
    mae = np.abs(cs[:, None] - y[None, :]).mean(1)
    rmse = np.sqrt(((cs[:, None] - y[None, :]) ** 2).mean(1))
    lc = np.log(np.cosh(cs[:, None] - y[None, :])).mean(1)
    c = float(y.mean())
    per_batch = {}
    for b in batch_sizes:
        e = c - y
        chunks = [e[i:i + b] for i in range(0, len(e), b)]
        per_batch[int(b)] = {"mae": float(np.mean([np.abs(k).mean() for k in chunks])),
                             "rmse": float(np.mean([np.sqrt((k * k).mean()) for k in chunks]))}
    out = {"n": int(y.size), "std_y": float(y.std()), "best_constant_mae": float(mae.min()),
           "best_constant_mae_at": float(cs[mae.argmin()]), "best_constant_rmse": float(rmse.min()),
           "constant_mae_at_mean": float(np.abs(c - y).mean()), "min_constant_logcosh": float(lc.min()),
           "per_batch": per_batch, "pairs": {}}
    for name, (m, r) in PAPER_PAIRS.items():
        out["pairs"][name] = {"mae": m, "rmse": r, "ratio": r / m, "broadcast_possible":
                              bool(m >= out["best_constant_mae"] and r >= out["std_y"]),
                              "below_constant_rmse": bool(r < out["best_constant_rmse"]),
                              "two_point_error": r * r / m, "two_point_share": m * m / (r * r)}
    return out


def render_pairs(readings: dict) -> str:
    """:func:`pair_readings` as Markdown lines."""
    r = readings
    lines = [f"Test labels: n = {r['n']}, std {r['std_y']:.4f}; best constant predictor: MAE {r['best_constant_mae']:.4f} "
             f"(at {r['best_constant_mae_at']:.2f}), RMSE {r['best_constant_rmse']:.4f}; smallest mean Log-Cosh of a "
             f"constant {r['min_constant_logcosh']:.4f}.",
             "Per-batch means for the constant predictor at the label mean (global MAE "
             f"{r['constant_mae_at_mean']:.4f}, RMSE {r['best_constant_rmse']:.4f}): " + "; ".join(
                 f"batch {b}: MAE {v['mae']:.4f}, RMSE {v['rmse']:.4f}" for b, v in r["per_batch"].items()) + ".", "",
             "| paper cell | MAE | RMSE | RMSE/MAE | broadcast (n,1)-(n,) possible | two-point shape (error, share) |",
             "|---|---|---|---|---|---|"]
    for name, p in r["pairs"].items():
        lines.append(f"| {name} | {p['mae']:.3f} | {p['rmse']:.3f} | {p['ratio']:.2f} | "
                     f"{'yes' if p['broadcast_possible'] else 'no'} | {p['two_point_error']:.2f}, {p['two_point_share']:.2f} |")
    return "\n".join(lines) + "\n"


def _mnist_test_labels(mirror) -> np.ndarray:
    import gzip

    path = Path(mirror) / "mnist" / "t10k-labels-idx1-ubyte.gz"
    if not path.is_file():
        raise ConfigError(f"no MNIST test labels at {path}: pass --mirror <the data folder>")
    return np.frombuffer(gzip.open(path).read()[8:], dtype=np.uint8).astype(np.float64)


def main(argv=None) -> int:
    import os

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--today", default="results/reference/tables/table5.csv", type=Path)
    parser.add_argument("--matched", default="results/table5_matched/tables/table5.csv", type=Path)
    parser.add_argument("--out", default="results/tables/table5_matched.md", type=Path)
    parser.add_argument("--pair", action="store_true",
                        help="print the readings of random sampling's (MAE, RMSE) pair (issue 15) and stop")
    parser.add_argument("--mirror", default=os.environ.get("DFKD_DATA_MIRROR") or "data", type=Path)
    args = parser.parse_args(argv)
    if args.pair:
        try:
            print(render_pairs(pair_readings(_mnist_test_labels(args.mirror))), end="")
        except ConfigError as exc:
            print(f"error: {exc}")
            return 2
        return 0
    try:
        text = render(read_summary(args.today), read_summary(args.matched))
    except ConfigError as exc:
        print(f"error: {exc}")
        return 2
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(args.out, text.encode())
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
