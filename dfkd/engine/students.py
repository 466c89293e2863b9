"""The student builder: each yaml under ``conf/student/`` names :class:`Student` in ``_target_``."""

from __future__ import annotations

from dfkd.core.validate import typed_fields
from dfkd.engine.distill import StudentConfig
from dfkd.models import inputs


class Student:
    """An architecture (``dfkd/models/<arch>.py``) and its optimiser settings; :meth:`config` adds a run's budget.

    Args:
        name: The yaml's name (records, folders, tables).
        arch: The model module; ``mlp`` takes ``hidden``, the others take ``params``.
        params: Keyword arguments of a non-MLP architecture's ``build_stack``.
        **settings: ``lr``, ``weight_decay``, ``loss`` (mse | logcosh), ``eval_chunk``.
    """

    def __init__(self, name: str, arch: str = "mlp", hidden: int | None = None, params: dict | None = None,
                 **settings):
        self.name, self.arch = str(name), str(arch)
        fields = dict(settings, arch=self.arch)
        if self.arch == "mlp":
            fields["hidden"] = hidden if hidden is not None else StudentConfig.hidden
        else:
            fields["arch_params"] = dict(params or {})
        self.inputs = (inputs(self.arch),)
        self.fields = typed_fields(StudentConfig, fields, "student.")

    @property
    def hidden(self) -> int | None:
        """The MLP's hidden width (None for other architectures)."""
        return self.fields["hidden"] if self.arch == "mlp" else None

    def config(self, epochs: int, steps_per_epoch: int, batch_size: int) -> StudentConfig:
        """The student with a run's budget (``batch_size`` 0: the paper's rule)."""
        budget = typed_fields(StudentConfig, {"epochs": epochs, "steps_per_epoch": steps_per_epoch,
                                              "batch_size": batch_size}, "")
        return StudentConfig(**self.fields, **budget)
