"""dfkd: data-free knowledge distillation for regression (Zhou & Chiam, 2023)."""

__version__ = "0.1.0"
