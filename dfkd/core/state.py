"""State helpers for checkpoints: copy saved tensors back in place, save and restore random streams.

Shared by the engine's stack checkpoints and every method with state of its own.
"""

from __future__ import annotations

import torch


def one_line(exc: BaseException) -> str:
    """An exception as one short line (type and message, at most 160 characters of message)."""
    text = " ".join(str(exc).split())
    text = text if len(text) <= 160 else text[:157] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def restore_(dst: torch.Tensor, src) -> None:
    """Copy a saved tensor into ``dst`` in place (keeping views and aliases of ``dst`` valid).

    Raises:
        ValueError: if ``src`` is not a tensor of exactly ``dst``'s shape and dtype (no broadcasting).
    """
    if not isinstance(src, torch.Tensor) or src.shape != dst.shape or src.dtype != dst.dtype:
        got = f"{tuple(src.shape)} {src.dtype}" if isinstance(src, torch.Tensor) else type(src).__name__
        raise ValueError(f"saved tensor {got} does not fit {tuple(dst.shape)} {dst.dtype}")
    with torch.no_grad():
        dst.copy_(src)


def generator_states(gens) -> list[torch.Tensor]:
    """The states of a list of ``torch.Generator`` (CPU byte tensors, whatever the generators' device)."""
    return [g.get_state() for g in gens]


def set_generator_states(gens, states) -> None:
    """Restore states saved by :func:`generator_states`, one per generator.

    Raises:
        ValueError: if the number of states differs from the number of generators.
    """
    if not isinstance(states, (list, tuple)) or len(states) != len(gens):
        raise ValueError(f"expected {len(gens)} generator states, got "
                         f"{len(states) if isinstance(states, (list, tuple)) else type(states).__name__}")
    for g, s in zip(gens, states):
        g.set_state(s)
