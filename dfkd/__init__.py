"""dfkd: data-free knowledge distillation for regression (Zhou & Chiam, 2023)."""

__version__ = "0.1.0"


def __getattr__(name):
    """``dfkd.DistilledRegressor`` (imported on first use, so ``import dfkd`` stays light)."""
    if name in ("DistilledRegressor", "read_export_metadata"):
        from dfkd import estimator

        return getattr(estimator, name)
    raise AttributeError(f"module 'dfkd' has no attribute {name!r}")
