"""A run's test predictions as `.npz` bytes: one array per test item, keyed by its id (pure).

The raw material of ensembles. Probability maps are kept as float16 (a resolution of 1e-3,
far below what a threshold sees); coordinates as float64. What an item's array means is the
task's business (its `map_channels`, `predictions_from_maps`).
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np

from competition.errors import CompetitionError

Maps = dict[str, np.ndarray]


def to_npz(maps: Maps, dtype: str = "float16") -> bytes:
    buf = io.BytesIO()
    arrays: dict[str, Any] = {str(k): np.asarray(v, dtype=dtype) for k, v in maps.items()}
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


def from_npz(data: bytes, source: str = "maps") -> Maps:
    """The arrays back, as float32 (float64 where they were stored so)."""
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as archive:
            maps = {k: archive[k] for k in archive.files}
    except Exception as e:  # numpy raises many types on damaged archives
        raise CompetitionError(f"{source}: not a prediction archive ({e})") from None
    if not maps:
        raise CompetitionError(f"{source}: the prediction archive is empty")
    for key, array in maps.items():
        if array.ndim < 2 or not np.issubdtype(array.dtype, np.floating):
            raise CompetitionError(f"{source}: {key} is not a map of numbers "
                                   f"(shape {array.shape}, {array.dtype})")
    return {k: v if v.dtype == np.float64 else v.astype(np.float32) for k, v in maps.items()}
