"""The benchmark script's arithmetic and output (its figures are printed, never asserted as timings)."""

import time

import pytest

from dfkd import bench


def test_ratio_ceiling_scales_the_ratio_by_the_unused_matmul_share():
    # 100 vs 10 model-epochs/s (10x) with matmuls at 20 of a possible 80 GFLOP/s: matmuls take a quarter of the
    # batched time, so with everything else free the batched engine would be 4x faster: 40x.
    assert bench.ratio_ceiling(100.0, 10.0, 20.0, 80.0) == pytest.approx(40.0)
    assert bench.ratio_ceiling(50.0, 10.0, 80.0, 80.0) == pytest.approx(5.0)


def test_matmul_rate_on_cpu_time_is_positive():
    assert bench._matmul_gflops(seconds=0.05, n=128, clock=time.process_time) > 0


def test_bench_rejects_an_unknown_variant(capsys):
    assert bench.main(["--variants", "nope/1", "--mnist-variants", "none", "--no-protein"]) == 2
    assert "unknown variant" in capsys.readouterr().err


def test_bench_prints_a_row_per_variant_with_ratio_and_ceiling(capsys, monkeypatch):
    monkeypatch.setattr(bench, "matmul_rates", lambda: {"1 thread (CPU time)": 50.0})
    rc = bench.main(["--datasets", "cpusmall", "--variants", "random/0,direct/1", "--replicas", "2",
                     "--seconds", "0.2", "--mnist-variants", "none", "--no-protein",
                     "--overhead-records", "/nonexistent"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "ceiling" in out
    rows = [line.split() for line in out.splitlines() if line.startswith("cpusmall")]
    assert [r[1] for r in rows] == ["random/0", "direct/1"]
    for r in rows:
        batched, loop, ratio = float(r[2]), float(r[3]), float(r[4].rstrip("x"))
        assert batched > 0 and loop > 0
        assert ratio == pytest.approx(batched / loop, abs=0.06)
        assert float(r[7].rstrip("x")) >= ratio  # nothing beats the matmul-only bound
