"""Probe a student at snapshots of its training with every synthetic-data method (paper section 4.1).

The student is trained by the batched engine (:func:`dfkd.engine.distill.distill`) with plain random
sampling (alpha 0), so it is, bit for bit, the student of the "Random sampling" cell for its seed.
*Probes* are methods (:mod:`dfkd.methods`) bound to that same, live student stack. Before every
student epoch e each probe gets ``start_epoch(e, rows)``, as the engine calls it when alpha > 0; only
the generator has state there, so it is trained alongside the student, one round per epoch against the
current student, while the student itself never sees a probe's rows. At each snapshot epoch e (0 = the
untrained student, e = the student after e epochs) every probe draws ``rows`` inputs and the student
loss ``(T(x) - S(x))^2`` of each row is recorded: the generator's batch at snapshot e is the batch a
generator run would draw in its epoch e (e + 1 rounds), given this student.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from dfkd.core import rng
from dfkd.engine.alpha import AlphaSchedule
from dfkd.engine.distill import StudentConfig, distill, predict_rows
from dfkd.engine.teacher import mse_per_replica, stack_splits
from dfkd.errors import ConfigError
from dfkd.data.context import Context
from dfkd.methods.random import Random


@dataclass
class Snapshot:
    """What the probes drew at one epoch.

    Attributes:
        epoch: Student epochs trained before the snapshot (0 = untrained).
        val_rmse: The student's validation RMSE at the snapshot, per replica ``(R,)``.
        batches: Per probe, the rows it drew ``(R, rows, *input_shape)`` (CPU).
        losses: Per probe, the student loss ``(T(x) - S(x))^2`` of each row ``(R, rows)`` (CPU).
    """

    epoch: int
    val_rmse: torch.Tensor
    batches: dict = field(default_factory=dict)
    losses: dict = field(default_factory=dict)


def check_snapshots(snapshots, epochs: int) -> list[int]:
    """Snapshot epochs as a list of ints: at least one, strictly increasing, in ``0..epochs``.

    Raises:
        ConfigError: one line naming the fix.
    """
    if isinstance(snapshots, (int, float)) and not isinstance(snapshots, bool):
        snapshots = [snapshots]
    try:
        out = [int(e) for e in snapshots]
        if any(isinstance(e, bool) or float(e) != int(e) for e in snapshots):
            raise ValueError
    except (TypeError, ValueError):
        raise ConfigError(f"snapshots must be a list of epochs, got {snapshots!r}: set e.g. "
                          f"snapshots=[0,50,100,500]") from None
    if not out:
        raise ConfigError("snapshots is empty: set e.g. snapshots=[0,50,100,500]")
    if any(b <= a for a, b in zip(out, out[1:])) or out[0] < 0:
        raise ConfigError(f"snapshots must be increasing epochs >= 0, got {out}: set e.g. snapshots=[0,50,100,500]")
    if out[-1] > epochs:
        raise ConfigError(f"snapshot epoch {out[-1]} lies beyond epochs={epochs}: set epochs={out[-1]} or drop it "
                          f"from snapshots")
    return out


class SnapshotProbes(Random):
    """Random sampling for the student (should alpha ever be > 0) that also drives the probes.

    Bound by the engine like any method; it binds every probe to the same teacher and student, with
    its own noise streams (``study:<name>``) so that the student's draws are those of a plain random
    run. :meth:`after_epoch` is the engine's ``progress`` callback.
    """

    name = "random"

    def __init__(self, probes: dict, rows: int, snapshots: list[int], contexts: dict | None = None,
                 X_val=None, y_val=None):
        self.probes, self.rows, self.snapshots = dict(probes), int(rows), list(snapshots)
        self.contexts = dict(contexts or {})
        self.X_val, self.y_val = X_val, y_val
        self.taken: list[Snapshot] = []

    def bind(self, teacher, student, seeds, device="cpu", context: Context | None = None) -> None:
        super().bind(teacher, student, seeds, device, context)
        for name, probe in self.probes.items():
            probe.bind(teacher, student, seeds, device, self.contexts.get(name, self.context))
            probe.set_noise(rng.generators(seeds, f"study:{name}", device))
        self._before_epoch(0)

    def after_epoch(self, epoch: int, best_mse=None) -> None:
        """Engine callback after student epoch ``epoch``: the probes' turn before epoch ``epoch + 1``."""
        self._before_epoch(epoch + 1)

    def _before_epoch(self, epoch: int) -> None:
        for probe in self.probes.values():
            probe.start_epoch(epoch, self.rows)
        if epoch in self.snapshots:
            self.taken.append(self.draw(epoch))

    def draw(self, epoch: int) -> Snapshot:
        """Every probe's batch against the current student, and the student loss of each row."""
        snap = Snapshot(epoch=epoch, val_rmse=self._val_rmse())
        for name, probe in self.probes.items():
            x = probe.sample(self.rows)
            diff = self.teacher.predict(x) - self.student.predict(x)
            snap.batches[name] = x.detach().cpu()
            snap.losses[name] = (diff * diff).detach().cpu()
        return snap

    def _val_rmse(self) -> torch.Tensor:
        if self.X_val is None:
            return torch.full((len(self.seeds),), math.nan)
        return mse_per_replica(predict_rows(self.student, self.X_val), self.y_val).sqrt().cpu()


def probe_snapshots(teacher, splits, seeds: list[int], probes: dict, snapshots: list[int], rows: int,
                    cfg: StudentConfig, device="cpu", context: Context | None = None, contexts: dict | None = None,
                    progress=None):
    """Train a student with random sampling for ``cfg.epochs`` epochs and probe it at ``snapshots``.

    Args:
        teacher: the teachers' stack (differentiable for the gradient probes), replica r for ``seeds[r]``.
        splits: per-seed splits (validation rows give the student's RMSE at each snapshot).
        probes: ``{name: unbound Method}``, e.g. random, generator, direct and de.
        snapshots: increasing epochs in ``0..cfg.epochs`` (see :func:`check_snapshots`).
        rows: rows each probe draws per snapshot, and the batch of its per-epoch updates.
        context: the dataset's inputs; ``contexts`` overrides it per probe (e.g. a search box for de).
        progress: optional ``(epoch, best_mse)`` callable after each student epoch.

    Returns:
        ``(snapshots, traces)``: one :class:`Snapshot` per snapshot epoch, and the engine's per-epoch traces.
    """
    snapshots = check_snapshots(snapshots, cfg.epochs)
    data = stack_splits(splits, device)
    driver = SnapshotProbes(probes, rows, snapshots, contexts, data["X_val"], data["y_val"])

    def after_epoch(epoch, best_mse):
        driver.after_epoch(epoch, best_mse)
        if progress is not None:
            progress(epoch, best_mse)

    _, traces, _, _ = distill(teacher, splits, seeds, driver, AlphaSchedule("constant", 0.0), cfg, device,
                              progress=after_epoch, context=context)
    return driver.taken, traces
