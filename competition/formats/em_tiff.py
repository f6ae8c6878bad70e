"""ISBI 2012 TIFF stacks: cell-probability submissions and 0/255 label stacks.

A submission is checked from cheap facts before any pixel is decoded: the number of pages
(counted by walking the chain of image directories, stopping one past the expected number of
slices), then each page's shape, pixel type, compression and strip or tile layout from its
tags. Only then is it decoded, page by page, each compressed strip first inflated into a
bounded buffer, so a file that declares a small page but inflates to gigabytes (a deflate
bomb) or holds 100,000 pages costs no more than the test volume would.
"""

from __future__ import annotations

import io
import lzma
import struct
import zlib
from collections.abc import Callable

import numpy as np
import tifffile

from competition.errors import SubmissionError

MAGICS = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
# Compressions whose decoded size can be bounded while inflating (TIFF Compression tag).
COMPRESSIONS = {1: "none", 8: "deflate", 32946: "deflate", 34925: "lzma"}
ACCEPTED_TYPES = "floating-point, 8-bit (uint8) or 1-bit"
MIB = 1024 * 1024
_STEP = 4 * MIB  # inflate this much at a time


def read_stack(data: bytes) -> np.ndarray:
    """Any readable TIFF as an array (2D images become a 1-slice stack). For trusted files
    (the competition's own); submissions go through `read_probabilities`."""
    _check_magic(data)
    try:
        array = tifffile.imread(io.BytesIO(data))
    except MemoryError:
        raise
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
    map's scale is ambiguous). The file's page count, page shapes, pixel types and layout are
    checked against `shape` (slices, height, width) before anything is decoded."""
    _check_magic(data)
    n, h, w = (int(s) for s in shape)
    n_pages = count_pages(data, n + 1)
    if n_pages != n:
        found = f"more than {n}" if n_pages > n else str(n_pages)
        raise SubmissionError(
            f"the file holds {found} pages (slices): the stack does not match the test "
            f"volume's {tuple(shape)} (slices, height, width)")
    stack = np.empty((n, h, w), np.float32)
    try:
        tif = tifffile.TiffFile(io.BytesIO(data))
    except MemoryError:
        raise
    except Exception as e:
        raise SubmissionError(f"unreadable or truncated TIFF ({type(e).__name__}: {e})") from None
    with tif:
        for z in range(n):
            stack[z] = _read_page(data, tif, z, (n, h, w))
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


def count_pages(data: bytes, stop: int) -> int:
    """The pages (image directories) of a TIFF, counted up to `stop`, reading only each
    directory's entry count and link: no tag values, no pixels."""
    big = data[2:4] in (b"\x00+", b"+\x00")
    order = "<" if data[:2] == b"II" else ">"
    if big:
        head, count_fmt, entry_size, link_fmt = 16, "Q", 20, "Q"
        if len(data) < head:
            raise SubmissionError("unreadable or truncated TIFF (short header)")
        offset = struct.unpack(order + "Q", data[8:16])[0]
    else:
        head, count_fmt, entry_size, link_fmt = 8, "H", 12, "I"
        if len(data) < head:
            raise SubmissionError("unreadable or truncated TIFF (short header)")
        offset = struct.unpack(order + "I", data[4:8])[0]
    count_size, link_size = struct.calcsize(count_fmt), struct.calcsize(link_fmt)
    seen: set[int] = set()
    pages = 0
    while offset and pages < stop:
        if offset in seen:
            raise SubmissionError("unreadable TIFF (its image directories form a loop)")
        seen.add(offset)
        if offset < head or offset + count_size > len(data):
            raise SubmissionError(f"unreadable or truncated TIFF (page {pages} lies outside "
                                  "the file)")
        entries = struct.unpack(order + count_fmt, data[offset:offset + count_size])[0]
        link = offset + count_size + entries * entry_size
        if link + link_size > len(data):
            raise SubmissionError(f"unreadable or truncated TIFF (page {pages} is cut off)")
        pages += 1
        offset = struct.unpack(order + link_fmt, data[link:link + link_size])[0]
    return pages


def _read_page(data: bytes, tif: tifffile.TiffFile, z: int,
               shape: tuple[int, int, int]) -> np.ndarray:
    """Slice `z` as float32, after its tags are checked and its strips inflate within bounds."""
    try:
        page = tif.pages[z]
        page_shape, dtype = tuple(page.shape), page.dtype
        compression = int(page.compression)
        offsets, counts = tuple(page.dataoffsets), tuple(page.databytecounts)
        chunk = int(np.prod(page.chunks)) if page.chunks else 0
    except MemoryError:
        raise
    except Exception as e:
        raise SubmissionError(f"unreadable or truncated TIFF ({type(e).__name__}: {e})",
                              where=f"slice {z}") from None
    if page_shape != shape[1:]:
        raise SubmissionError(
            f"a page of shape {page_shape} (height, width): the stack does not match the test "
            f"volume's {shape} (slices, height, width)", where=f"slice {z}")
    dtype = np.dtype(dtype) if dtype is not None else None
    if dtype is None or not (dtype in (np.uint8, np.bool_) or
                             np.issubdtype(dtype, np.floating)):
        raise SubmissionError(
            f"pixel type {dtype} is not accepted: submit floating-point cell "
            "probabilities in [0, 1] (float32), an 8-bit map (uint8, 0..255) or a binary "
            "(1-bit) map")
    if compression not in COMPRESSIONS:
        raise SubmissionError(
            f"TIFF compression {compression} is not accepted: write the stack uncompressed, "
            "with deflate (zlib) or with LZMA", where=f"slice {z}")
    segment = chunk * dtype.itemsize  # the most one strip or tile decodes to
    page_bytes = shape[1] * shape[2] * dtype.itemsize
    if len(offsets) != len(counts) or len(offsets) * segment > 4 * page_bytes + MIB:
        raise SubmissionError("the page's strips or tiles declare far more pixels than its "
                              "shape", where=f"slice {z}")
    if compression != 1:
        for offset, count in zip(offsets, counts, strict=True):
            _check_inflated_size(data[offset:offset + count], compression, segment, z)
    try:
        array = page.asarray()
    except MemoryError:
        raise
    except Exception as e:
        raise SubmissionError(f"unreadable or truncated TIFF ({type(e).__name__}: {e})",
                              where=f"slice {z}") from None
    if array.shape != shape[1:]:
        raise SubmissionError(f"a page decodes to shape {array.shape}, not {shape[1:]}",
                              where=f"slice {z}")
    if array.dtype == np.uint8:
        return array.astype(np.float32) / 255.0
    return array.astype(np.float32)


def _check_inflated_size(blob: bytes, compression: int, limit: int, z: int) -> None:
    """Inflate one strip or tile into a bounded buffer, step by step, and refuse it where it
    would pass `limit` bytes (what the page's tags say it holds)."""
    inflate: Callable[[bytes, int], bytes]
    try:
        if COMPRESSIONS[compression] == "deflate":
            zd = zlib.decompressobj()

            def inflate(chunk: bytes, size: int) -> bytes:
                return zd.decompress(zd.unconsumed_tail or chunk, size)

            def done() -> bool:
                return zd.eof or not zd.unconsumed_tail
        else:
            ld = lzma.LZMADecompressor()

            def inflate(chunk: bytes, size: int) -> bytes:
                return ld.decompress(chunk, size)

            def done() -> bool:
                return ld.eof or ld.needs_input
        total = len(inflate(blob, min(_STEP, limit + 1)))
        while total <= limit and not done():
            total += len(inflate(b"", min(_STEP, limit + 1 - total)))
    except (zlib.error, lzma.LZMAError, EOFError) as e:
        raise SubmissionError(f"unreadable compressed data ({e})", where=f"slice {z}") from None
    if total > limit:
        raise SubmissionError(
            f"a strip inflates to more than the {limit} bytes the page's tags declare "
            "(a decompression bomb is not a submission)", where=f"slice {z}")


def _check_magic(data: bytes) -> None:
    if not data.startswith(MAGICS):
        raise SubmissionError("not a TIFF file (bad magic bytes)")


def write_stack(array: np.ndarray) -> bytes:
    """Deterministic TIFF bytes (no timestamps)."""
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, array, photometric="minisblack")
    return buffer.getvalue()
