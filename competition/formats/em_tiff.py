"""ISBI 2012 TIFF stacks: cell-probability submissions and 0/255 label stacks."""

from __future__ import annotations

import io

import numpy as np
import tifffile

from competition.errors import SubmissionError


def read_stack(data: bytes) -> np.ndarray:
    """Any readable TIFF as an array (2D images become a 1-slice stack)."""
    if not data.startswith((b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")):
        raise SubmissionError("not a TIFF file (bad magic bytes)")
    try:
        array = tifffile.imread(io.BytesIO(data))
    except Exception as e:  # tifffile raises many types on damaged files
        raise SubmissionError(f"unreadable or truncated TIFF ({type(e).__name__}: {e})") from None
    array = np.asarray(array)
    if array.ndim == 2:
        array = array[None]
    if array.ndim != 3:
        raise SubmissionError(f"expected a stack of 2D slices; got an array of shape {array.shape}")
    return array


def read_probabilities(data: bytes, shape: tuple[int, int, int]) -> np.ndarray:
    """A submission as float32 cell probabilities in [0, 1]. Accepted pixel types: floats in
    [0, 1], uint8 (divided by 255) and binary maps; other integer types are refused (a 16-bit
    map's scale is ambiguous)."""
    stack = read_stack(data)
    if stack.shape != tuple(shape):
        raise SubmissionError(
            f"stack shape {stack.shape} (slices, height, width) does not match the test "
            f"volume's {tuple(shape)}"
        )
    if stack.dtype == np.uint8:
        return stack.astype(np.float32) / 255.0
    if stack.dtype == bool:
        return stack.astype(np.float32)
    if not np.issubdtype(stack.dtype, np.floating):
        raise SubmissionError(
            f"pixel type {stack.dtype} is not accepted: submit floating-point cell "
            "probabilities in [0, 1] (float32), an 8-bit map (uint8, 0..255) or a binary "
            "(1-bit) map")
    stack = stack.astype(np.float32)
    bad = ~np.isfinite(stack)
    if bad.any():
        z, y, x = np.argwhere(bad)[0]
        raise SubmissionError(f"NaN or infinite value at (row {y}, column {x})", where=f"slice {z}")
    out = (stack < 0) | (stack > 1)
    if out.any():
        z, y, x = np.argwhere(out)[0]
        raise SubmissionError(
            f"value {stack[z, y, x]:g} at (row {y}, column {x}) outside [0, 1]; "
            "float maps are cell probabilities (high = cell)", where=f"slice {z}")
    return stack


def write_stack(array: np.ndarray) -> bytes:
    """Deterministic TIFF bytes (no timestamps)."""
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, array, photometric="minisblack")
    return buffer.getvalue()
