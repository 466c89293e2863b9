"""tqdm progress bars for long runs (on stderr), and the callbacks the engine's loops report through."""

from __future__ import annotations

import sys


def progress_bar(enabled: bool, total: int, desc: str):
    """A tqdm bar of ``total`` epochs, or None when progress is off."""
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="ep", mininterval=2.0, dynamic_ncols=True, file=sys.stderr)


def teacher_progress(bar):
    """The teacher loop's callback for ``bar`` (None when there is no bar)."""
    if bar is None:
        return None

    def update(epoch, n_active, best):
        bar.update(1)
        bar.set_postfix_str(f"active {n_active}, best val RMSE {min(best):.4f}..{max(best):.4f}", refresh=False)
    return update


def bar_resume(bar):
    """Start a progress bar at a resumed epoch (its rate then counts only the epochs run now)."""
    if bar is None:
        return None

    def resume(epoch):
        bar.initial = bar.n = bar.last_print_n = epoch
        bar.refresh()
    return resume


def student_progress(bar, every: int = 25):
    """The distillation loop's callback for ``bar`` (None when there is no bar)."""
    if bar is None:
        return None

    def update(epoch, best_mse):
        bar.update(epoch + 1 - bar.n)  # a resumed stack's first epoch is not 0
        if epoch % every == 0:
            rmse = best_mse.sqrt()
            bar.set_postfix_str(f"best val RMSE {rmse.min().item():.4f}..{rmse.max().item():.4f}", refresh=False)
    return update
