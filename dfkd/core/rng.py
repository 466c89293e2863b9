"""Per-replica random streams.

Every replica draws from its own ``torch.Generator`` per purpose ("stream"),
seeded from (run seed, stream name). So a seed's numbers do not depend on which
other seeds share its stack, the batched engine and the one-model reference
consume identical draws, and a rerun of the same config is bit-for-bit the same.
(The authors never seeded torch; only their data split is seeded, so single runs
of theirs cannot be matched anyway, only the distribution over seeds.)
"""

from __future__ import annotations

import hashlib

import torch


def stream_seed(seed: int, stream: str) -> int:
    """A 63-bit seed derived from the run seed and a stream name."""
    digest = hashlib.sha256(f"dfkd:{int(seed)}:{stream}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def generator(seed: int, stream: str, device="cpu") -> torch.Generator:
    """One generator for one replica and one stream."""
    g = torch.Generator(device=torch.device(device))
    g.manual_seed(stream_seed(seed, stream))
    return g


def generators(seeds, stream: str, device="cpu") -> list[torch.Generator]:
    """One generator per seed (replica) for the given stream."""
    return [generator(s, stream, device) for s in seeds]


def randn(gens: list[torch.Generator], shape, device="cpu") -> torch.Tensor:
    """Standard normal draws ``(R, *shape)``, row r from ``gens[r]``.

    Row r equals ``torch.randn(shape, generator=gens[r])``, as the reference draws it.
    """
    out = torch.empty((len(gens),) + tuple(shape), device=torch.device(device))
    for r, g in enumerate(gens):
        out[r].normal_(generator=g)
    return out
