"""Kaggle's run-length encoding for the 2018 Data Science Bowl (pure, vectorised).

Pairs `start length`, 1-indexed, pixels numbered top to bottom then left to right
(column-major: `mask.T.ravel()`); a run may cross a column boundary.
"""

from __future__ import annotations

from typing import NoReturn

import numpy as np

MAX_DIGITS = 15  # any image's pixel count has fewer; longer tokens cannot be valid


class RLEError(ValueError):
    """An encoded string breaks a rule; the message says which."""

    index: int  # set by `parse_many` to the failing string's position


def encode(mask: np.ndarray) -> str:
    """Encode one binary mask; an empty mask gives an empty string."""
    flat = np.asarray(mask, dtype=bool).T.ravel()
    padded = np.concatenate([[False], flat, [False]])
    edges = np.flatnonzero(padded[1:] != padded[:-1])
    starts, ends = edges[::2], edges[1::2]
    runs = np.empty(2 * len(starts), dtype=np.int64)
    runs[0::2] = starts + 1
    runs[1::2] = ends - starts
    return " ".join(map(str, runs.tolist()))


def encode_labels(labels: np.ndarray) -> list[str]:
    """One RLE string per object of a label image, in increasing label order."""
    flat = np.asarray(labels).T.ravel()
    if not flat.any():
        return []
    # One pass over the pixels: boundaries where the label changes, grouped by label.
    change = np.flatnonzero(np.diff(flat)) + 1
    starts = np.concatenate([[0], change])
    ends = np.concatenate([change, [flat.size]])
    values = flat[starts]
    keep = values != 0
    starts, ends, values = starts[keep], ends[keep], values[keep]
    order = np.argsort(values, kind="stable")
    starts, ends, values = starts[order], ends[order], values[order]
    bounds = np.flatnonzero(np.diff(values)) + 1
    out = []
    for s, e in zip(np.split(starts, bounds), np.split(ends, bounds), strict=True):
        runs = np.empty(2 * len(s), dtype=np.int64)
        runs[0::2] = s + 1
        runs[1::2] = e - s
        out.append(" ".join(map(str, runs.tolist())))
    return out


def parse(text: str, n_pixels: int) -> np.ndarray:
    """Parse and validate one RLE string into an (n, 2) array of 0-based (start, length)."""
    words = text.split()
    bad = next((t for t in words if not (t.isascii() and t.isdigit())), None)
    if bad is not None:
        raise RLEError(f"non-integer token {bad[:20]!r} in EncodedPixels")
    big = next((t for t in words if len(t) > MAX_DIGITS), None)
    if big is not None:
        raise RLEError(f"number {big[:20]}... is too large for any image")
    tokens = np.array(words, dtype=np.int64)
    return check_runs(tokens, n_pixels)


def check_runs(tokens: np.ndarray, n_pixels: int) -> np.ndarray:
    if tokens.size % 2:
        raise RLEError(f"odd number of tokens ({tokens.size}): runs come in 'start length' pairs")
    runs = tokens.reshape(-1, 2)
    starts, lengths = runs[:, 0], runs[:, 1]
    if (starts < 1).any():
        raise RLEError(f"run start {int(starts[starts < 1][0])} < 1 (pixels are 1-indexed)")
    if (lengths < 1).any():
        raise RLEError(f"run length {int(lengths[lengths < 1][0])} < 1")
    if len(starts) > 1:
        d = np.diff(starts)
        if (d <= 0).any():
            i = int(np.flatnonzero(d <= 0)[0])
            raise RLEError(
                f"run starts not strictly increasing ({int(starts[i])} then {int(starts[i + 1])})"
            )
        ends = starts + lengths
        if (ends[:-1] > starts[1:]).any():
            i = int(np.flatnonzero(ends[:-1] > starts[1:])[0])
            raise RLEError(
                f"runs overlap ({int(starts[i])} {int(lengths[i])} reaches past "
                f"{int(starts[i + 1])})"
            )
    last = int((starts + lengths - 1).max()) if len(starts) else 0
    if last > n_pixels:
        raise RLEError(f"run reaches pixel {last}, beyond the image's {n_pixels} pixels")
    zero_based: np.ndarray = runs - np.array([1, 0])
    return zero_based


_NOT_DIGIT_SPACE_NEWLINE = str.maketrans("", "", "0123456789 \n")


def _strict(joined: str) -> bool:
    """Only digits, single spaces between tokens and newlines between strings (C-speed)."""
    return (not joined.translate(_NOT_DIGIT_SPACE_NEWLINE) and "  " not in joined
            and " \n" not in joined and "\n " not in joined
            and not joined.startswith(" ") and not joined.endswith(" "))


def parse_many(texts: list[str], n_pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Parse many RLE strings at once: all runs (0-based) and the number of runs of each.

    Validation is vectorised over all strings; on a failure the first bad string is parsed
    alone to word the error, which carries its index as `.index`.
    """
    n_pixels = np.asarray(n_pixels, dtype=np.int64)
    joined = "\n".join(texts)
    if not _strict(joined):
        # Tolerant path (tabs, double spaces) and exact error messages: string by string.
        return _parse_each(texts, n_pixels)
    counts = np.array([t.count(" ") + 1 if t else 0 for t in texts], dtype=np.int64)
    try:
        tokens = np.array(joined.split(), dtype=np.int64) if counts.sum() else np.zeros(0, np.int64)
    except (OverflowError, ValueError):
        # A number too large for int64 (OverflowError), or for Python's int() at all (over
        # 4,300 digits, refused before any conversion work: ValueError): string by string,
        # `parse` names it by its length before converting anything.
        return _parse_each(texts, n_pixels)
    odd = counts % 2 == 1
    if odd.any():
        return _fail(texts, n_pixels, int(np.flatnonzero(odd)[0]))
    runs = tokens.reshape(-1, 2)
    n_runs = counts // 2
    owner = np.repeat(np.arange(len(texts)), n_runs)
    starts, lengths = runs[:, 0], runs[:, 1]
    ends = starts + lengths
    bad = (starts < 1) | (lengths < 1) | (ends - 1 > n_pixels[owner])
    same = owner[1:] == owner[:-1]
    bad_next = same & ((starts[1:] <= starts[:-1]) | (ends[:-1] > starts[1:]))
    if bad.any() or bad_next.any():
        first = min(int(owner[np.flatnonzero(bad)[0]]) if bad.any() else len(texts),
                    int(owner[1:][np.flatnonzero(bad_next)[0]]) if bad_next.any()
                    else len(texts))
        return _fail(texts, n_pixels, first)
    return runs - np.array([1, 0]), n_runs


def _parse_each(texts: list[str], n_pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    parsed = []
    for k, text in enumerate(texts):
        try:
            parsed.append(parse(text, int(n_pixels[k])))
        except RLEError as e:
            e.index = k
            raise
    counts = np.array([len(p) for p in parsed], dtype=np.int64)
    runs = np.concatenate(parsed) if parsed else np.zeros((0, 2), np.int64)
    return runs.reshape(-1, 2), counts


def _fail(texts: list[str], n_pixels: np.ndarray, k: int) -> NoReturn:
    try:
        parse(texts[k], int(n_pixels[k]))
    except RLEError as e:
        e.index = k
        raise
    raise AssertionError(f"string {k} failed the vectorised check but parses")  # unreachable


def expand(runs: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every pixel of every object (flat column-major index) and its object label (1..n)."""
    starts, lengths = runs[:, 0], runs[:, 1]
    total = int(lengths.sum())
    offsets = np.repeat(np.cumsum(lengths) - lengths, lengths)
    pixels = np.arange(total) - offsets + np.repeat(starts, lengths)
    owner = np.repeat(np.repeat(np.arange(1, len(counts) + 1, dtype=np.int32), counts), lengths)
    return pixels, owner


def first_overlap(runs: np.ndarray, counts: np.ndarray) -> int:
    """The index of the first object whose runs overlap an earlier object's, or -1: found from
    the runs alone (sorted by start), without painting a pixel.

    `runs` are all objects' 0-based (start, length) runs in object order, `counts` the runs
    per object; each object's own runs are disjoint (the parser checks that).
    """
    if len(counts) < 2 or _disjoint(runs):
        return -1
    # Objects 0..k overlap for every k from the answer on: the smallest such k, by bisection
    # (an object's runs are a prefix of `runs` together with the earlier objects').
    run_end = np.cumsum(counts)
    lo, hi = 1, len(counts) - 1
    while lo < hi:
        mid = (lo + hi) // 2
        if _disjoint(runs[: run_end[mid]]):
            lo = mid + 1
        else:
            hi = mid
    return lo


def _disjoint(runs: np.ndarray) -> bool:
    """Runs sorted by start are pairwise disjoint iff each ends before the next starts."""
    if len(runs) < 2:
        return True
    order = np.argsort(runs[:, 0], kind="stable")
    starts = runs[order, 0]
    ends = starts + runs[order, 1]
    return not bool((ends[:-1] > starts[1:]).any())


def paint(runs: np.ndarray, counts: np.ndarray, shape: tuple[int, int]) -> tuple[np.ndarray, int]:
    """Paint objects into a flat column-major label array, object k getting label k+1.

    `runs` are all objects' 0-based runs in object order, `counts` the runs per object.
    Returns the flat labels and the index of the first object that overlaps an earlier one
    (-1 if none): masks of one image are not allowed to overlap. Overlaps are found from the
    runs before any pixel is expanded, so overlapping masks never cost more than the runs.
    """
    h, w = shape
    flat = np.zeros(h * w, dtype=np.int32)
    if len(runs) == 0:
        return flat, -1
    first = first_overlap(runs, counts)
    if first >= 0:
        return flat, first
    pixels, owner = expand(runs, counts)
    flat[pixels] = owner
    return flat, -1


def runs_to_labels(
    runs: list[np.ndarray], shape: tuple[int, int]
) -> tuple[np.ndarray, int]:
    """`paint` for a list of per-object runs, returning an (h, w) label image."""
    counts = np.array([len(r) for r in runs], dtype=np.int64)
    allruns = np.concatenate(runs) if runs else np.zeros((0, 2), np.int64)
    flat, first_bad = paint(allruns.reshape(-1, 2), counts, shape)
    h, w = shape
    return flat.reshape(w, h).T, first_bad
