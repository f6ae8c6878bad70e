"""Kaggle-style slice masks: one CSV row per slice, `ImageId,EncodedPixels` (pure).

`ImageId` names a slice (for the LGG data `<case>_<n>`, the stem of its TIFF); `EncodedPixels`
is the slice's binary mask in Kaggle's run-length encoding (`competition.formats.rle`: pairs
`start length`, 1-indexed, column-major), empty for an empty slice. Every slice of the
solution needs exactly one row.

Examples
--------
>>> import numpy as np
>>> mask = np.zeros((4, 3), bool); mask[2:, 0] = True; mask[:2, 1] = True
>>> data = write_slices([("c_1", mask), ("c_2", np.zeros((4, 3), bool))])
>>> data.decode().splitlines()
['ImageId,EncodedPixels', 'c_1,3 4', 'c_2,']
>>> runs = read_slices(data, {"c_1": (4, 3), "c_2": (4, 3)})
>>> bool((slice_mask(runs["c_1"], (4, 3)) == mask).all()), len(runs["c_2"])
(True, 0)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

from competition.errors import SubmissionError
from competition.formats import rle
from competition.formats.text import read_csv_rows

HEADER = ["ImageId", "EncodedPixels"]


def write_slices(rows: Iterable[tuple[str, np.ndarray]]) -> bytes:
    """One row per (slice id, binary mask)."""
    lines = [",".join(HEADER)] + [f"{slice_id},{rle.encode(mask)}" for slice_id, mask in rows]
    return ("\n".join(lines) + "\n").encode()


def read_slices(data: bytes, shapes: Mapping[str, tuple[int, int]]) -> dict[str, np.ndarray]:
    """Each slice's runs ((n, 2) 0-based start, length), checked: every id of `shapes` once,
    no other id, valid runs within the slice. Errors name the CSV line and the ImageId."""
    rows = read_csv_rows(data, HEADER)
    seen: dict[str, int] = {}
    for line, (slice_id, _) in rows:
        slice_id = slice_id.strip()
        if slice_id not in shapes:
            raise SubmissionError(f"ImageId {slice_id[:60]!r} is not a slice of the test set",
                                  where=f"line {line}")
        if slice_id in seen:
            raise SubmissionError(f"ImageId {slice_id} has a second row (line {seen[slice_id]} "
                                  "was the first): one row per slice", where=f"line {line}")
        seen[slice_id] = line
    missing = [s for s in shapes if s not in seen]
    if missing:
        raise SubmissionError(f"{len(missing)} slice(s) have no row, e.g. "
                              f"{', '.join(sorted(missing)[:3])}: one row per slice")
    ids = [slice_id.strip() for _, (slice_id, _) in rows]
    texts = [encoded.strip() for _, (_, encoded) in rows]
    sizes = np.array([shapes[i][0] * shapes[i][1] for i in ids], dtype=np.int64)
    try:
        runs, counts = rle.parse_many(texts, sizes)
    except rle.RLEError as e:
        line, slice_id = rows[e.index][0], ids[e.index]
        raise SubmissionError(f"ImageId {slice_id}: {e}", where=f"line {line}") from None
    bounds = np.concatenate([[0], np.cumsum(counts)])
    return {slice_id: runs[bounds[k]:bounds[k + 1]] for k, slice_id in enumerate(ids)}


def slice_mask(runs: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """The (H, W) binary mask of one slice's runs."""
    h, w = shape
    flat = np.zeros(h * w, dtype=bool)
    if len(runs):
        pixels, _ = rle.expand(runs, np.array([len(runs)], dtype=np.int64))
        flat[pixels] = True
    mask: np.ndarray = flat.reshape(w, h).T
    return mask
