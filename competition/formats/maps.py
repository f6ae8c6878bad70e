"""A run's test predictions as `.npz` bytes (the raw material of ensembles). Nuclei: one
(H, W, C) probability array per ImageId; EM: the (slices, H, W) stack under "volume" (float16:
its 1e-3 resolution is far below what thresholds see); landmarks: one (landmarks, 3) float64
array of coordinates per specimen."""

from __future__ import annotations

import io

import numpy as np

from competition.errors import CompetitionError

VOLUME = "volume"


def to_npz(task: str, maps) -> bytes:
    arrays = {VOLUME: np.asarray(maps)} if task == "em" else dict(maps)
    buf = io.BytesIO()
    dtype = np.float64 if task == "landmarks" else np.float16
    np.savez_compressed(buf, **{k: np.asarray(v, dtype=dtype) for k, v in arrays.items()})
    return buf.getvalue()


def from_npz(task: str, data: bytes, source: str = "maps"):
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            arrays = {k: z[k].astype(np.float64 if task == "landmarks" else np.float32)
                      for k in z.files}
    except Exception as e:
        raise CompetitionError(f"{source}: not a probability-map archive ({e})") from None
    if task == "em":
        if VOLUME not in arrays or arrays[VOLUME].ndim != 3:
            raise CompetitionError(f"{source}: no (slices, H, W) '{VOLUME}' array")
        return arrays[VOLUME]
    if task == "landmarks":
        bad = [k for k, v in arrays.items() if v.ndim != 2 or v.shape[-1] != 3]
        if bad:
            raise CompetitionError(f"{source}: {bad[0]} is not a (landmarks, 3) array")
        return arrays
    bad = [k for k, v in arrays.items() if v.ndim != 3]
    if bad:
        raise CompetitionError(f"{source}: {bad[0]} is not an (H, W, C) map")
    return arrays
