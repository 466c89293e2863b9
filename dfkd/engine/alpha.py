"""The weight alpha of synthetic vs plain random samples (paper eq. 4).

The student's loss is ``a * mean (T(x_g) - S(x_g))^2 + (1 - a) * mean (T(x_p) - S(x_p))^2``.
"""

from __future__ import annotations

from dataclasses import dataclass

from dfkd.errors import ConfigError

SCHEDULES = ("constant", "decreasing", "increasing")


@dataclass(frozen=True)
class AlphaSchedule:
    """``constant``: a = value; ``decreasing``: a = 1 - (e+1)/E; ``increasing``: a = (e+1)/E."""

    schedule: str = "decreasing"
    value: float = 0.0

    def __post_init__(self):
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"unknown alpha schedule '{self.schedule}': use one of {', '.join(SCHEDULES)} "
                              f"(e.g. alpha=decreasing or alpha=constant alpha.value=0.5)")
        try:
            value = float(self.value)
        except (TypeError, ValueError):
            raise ConfigError(f"alpha.value must be a number in [0, 1], got '{self.value}'") from None
        if not 0.0 <= value <= 1.0:
            raise ConfigError(f"alpha.value must be in [0, 1], got {value}: set e.g. alpha.value=0.5")

    def __call__(self, epoch: int, epochs: int) -> float:
        """Alpha at 0-based ``epoch`` of ``epochs``."""
        if self.schedule == "constant":
            return float(self.value)
        frac = (epoch + 1) / epochs
        return 1.0 - frac if self.schedule == "decreasing" else frac

    @property
    def label(self) -> str:
        """Short name used in records and tables: ``decreasing``, ``increasing`` or the constant ("0", "1", "0.5")."""
        return self.schedule if self.schedule != "constant" else f"{float(self.value):g}"

    @property
    def mixes(self) -> bool:
        """Whether both sample sets carry weight (then m = 50, else m = 100: 100 samples per step either way)."""
        return not (self.schedule == "constant" and float(self.value) in (0.0, 1.0))

    def default_batch_size(self, total: int = 100) -> int:
        """The paper's m: half of ``total`` per set when mixing, all of it otherwise."""
        return total // 2 if self.mixes else total
