"""The ground floor: primitives that every higher layer shares, each written once.

``rng`` (per-(seed, purpose) random streams), ``optim`` (per-replica optimizers),
``state`` (tensor and generator state for checkpoints) and ``losses`` (the mse /
logcosh switch). Nothing here imports from another ``dfkd`` package except
``dfkd.errors``; see ``docs/architecture.md`` for the layer order.
"""
