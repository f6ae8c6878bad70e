"""NIfTI label volumes read within limits (pure): the header first, the voxels only after.

A submitted volume is a stream (a zip member, a file). Its header is parsed with nibabel
(shape, dtype, affine, voxel sizes) and checked against what the case expects before a single
voxel is decoded: a header that declares a huge array, another shape, a float type or another
geometry is refused from its first 540 bytes. The voxels are then inflated in bounded reads of
exactly the declared size, so a gzip bomb stops at that size, and a stream that holds more, or
less, or fails its checksum is refused naming which.

Volumes are written gzip-compressed with a zero timestamp: equal arrays give equal bytes.
"""

from __future__ import annotations

import gzip
import io
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import BinaryIO

import nibabel as nib
import numpy as np
from nibabel.orientations import aff2axcodes

from competition.errors import SubmissionError

GZIP_MAGIC = b"\x1f\x8b"
MAX_EXTENSION_BYTES = 1 << 20  # header extensions (between header and voxels) read at most
AFFINE_TOLERANCE_MM = 1e-3  # qform is float32 in the file; a copied affine agrees far closer
LABEL_DTYPES = ("uint8", "int8", "uint16", "int16", "uint32", "int32", "int64", "uint64")


@dataclass(frozen=True)
class Geometry:
    """Where a volume's voxels are: its array shape and its voxel-to-world affine (mm)."""

    shape: tuple[int, ...]
    affine: np.ndarray  # (4, 4)

    @property
    def zooms(self) -> tuple[float, ...]:
        """Voxel sizes in mm, in array axis order (the spacing of distances)."""
        return tuple(float(z) for z in np.linalg.norm(self.affine[:3, :3], axis=0))

    @property
    def axis_codes(self) -> tuple[str, ...]:
        """Where each array axis points (nibabel's codes, e.g. ('P', 'L', 'S'))."""
        codes = aff2axcodes(self.affine)  # type: ignore[no-untyped-call]
        return tuple(str(c) for c in codes)

    @property
    def diagonal_mm(self) -> float:
        """The volume's diagonal in mm: the largest distance two of its voxels can have."""
        return float(np.sqrt(sum((n * z) ** 2 for n, z in zip(self.shape, self.zooms,
                                                              strict=False))))


@dataclass(frozen=True)
class Header:
    shape: tuple[int, ...]
    dtype: np.dtype
    affine: np.ndarray
    vox_offset: int
    size: int  # bytes of the header itself (348 or 540)
    slope: float
    inter: float

    @property
    def geometry(self) -> Geometry:
        return Geometry(self.shape, self.affine)


def affine_from_spacing(spacing: Sequence[float], axes: Sequence[tuple[int, int]]) -> np.ndarray:
    """An affine whose array axis k steps `spacing[k]` mm along world axis `axes[k][0]`
    (0 = x, 1 = y, 2 = z) in direction `axes[k][1]` (+1 or -1).

    Examples
    --------
    >>> a = affine_from_spacing((1.0, 1.0, 5.0), [(1, -1), (0, -1), (2, 1)])
    >>> Geometry((4, 4, 2), a).axis_codes, Geometry((4, 4, 2), a).zooms
    (('P', 'L', 'S'), (1.0, 1.0, 5.0))
    """
    affine = np.eye(4)
    affine[:3, :3] = 0.0
    for k, (world, sign) in enumerate(axes):
        affine[world, k] = sign * float(spacing[k])
    return affine


def write_volume(data: np.ndarray, affine: np.ndarray) -> bytes:
    """A gzip-compressed NIfTI-1 file of `data` (its dtype kept) with `affine` as both qform
    and sform (code 1, scanner), zero timestamp: equal inputs give equal bytes."""
    image = nib.Nifti1Image(np.asarray(data),  # type: ignore[no-untyped-call]
                            np.asarray(affine, np.float64))
    image.set_qform(affine, code=1)  # type: ignore[no-untyped-call]
    image.set_sform(affine, code=1)  # type: ignore[no-untyped-call]
    return gzip.compress(image.to_bytes(), compresslevel=6, mtime=0)


def read_header(stream: BinaryIO) -> Header:
    """The header of a NIfTI-1 or NIfTI-2 single file (`n+1`/`n+2`), nothing more read."""
    first = _read_exact(stream, 4, "the header")
    sizes = {int.from_bytes(first, "little"), int.from_bytes(first, "big")}
    if 348 in sizes:
        size, cls = 348, nib.Nifti1Header
    elif 540 in sizes:
        size, cls = 540, nib.Nifti2Header
    else:
        raise SubmissionError("not a NIfTI file (its header does not start with the size 348 "
                              "or 540)")
    raw = first + _read_exact(stream, size - 4, "the header")
    try:
        header = cls.from_fileobj(io.BytesIO(raw), check=True)  # type: ignore[no-untyped-call]
        magic = bytes(header["magic"]).rstrip(b"\x00")
        shape = tuple(int(n) for n in header.get_data_shape())
        dtype = header.get_data_dtype()
        affine = np.asarray(header.get_best_affine(), np.float64)
        slope, inter = float(header["scl_slope"]), float(header["scl_inter"])
    except SubmissionError:
        raise
    except Exception as e:  # nibabel raises several types on malformed headers
        raise SubmissionError(f"malformed NIfTI header ({type(e).__name__}: {e})") from None
    if magic not in (b"n+1", b"n+2"):
        raise SubmissionError(f"NIfTI magic {magic!r}: only single files (n+1, n+2) are "
                              "accepted, not header/image pairs")
    if not np.isfinite(affine).all():
        raise SubmissionError("the affine holds NaN or infinite values")
    return Header(shape, np.dtype(dtype), affine, int(header["vox_offset"]), size,
                  slope, inter)


def _scaled(slope: float, inter: float) -> bool:
    """NIfTI: slope 0 or NaN means unscaled."""
    return (np.isfinite(slope) and slope not in (0.0, 1.0)) or \
        (np.isfinite(inter) and inter != 0.0)


def check_geometry(header: Header, expected: Geometry) -> None:
    """The header's shape, axis order and affine against the case's reference, refusing with
    the first that differs (and what to do)."""
    shape = header.shape
    while len(shape) > len(expected.shape) and shape[-1] == 1:
        shape = shape[:-1]  # (H, W, S, 1) is (H, W, S)
    if shape != expected.shape:
        raise SubmissionError(f"shape {_x(header.shape)} differs from the case's "
                              f"{_x(expected.shape)}")
    got = header.geometry
    if got.axis_codes != expected.axis_codes:
        raise SubmissionError(
            f"axis order {''.join(got.axis_codes)} differs from the reference's "
            f"{''.join(expected.axis_codes)} (its affine maps the array axes to other "
            "directions: write the array in the reference's axis order with its affine)")
    if not np.allclose(got.affine, expected.affine, rtol=0, atol=AFFINE_TOLERANCE_MM):
        if not np.allclose(got.zooms, expected.zooms, rtol=0, atol=AFFINE_TOLERANCE_MM):
            what = (f"voxel sizes {_mm(got.zooms)} mm differ from the reference's "
                    f"{_mm(expected.zooms)} mm")
        else:
            what = (f"affine differs from the reference's (origin {_mm(got.affine[:3, 3])} "
                    f"vs {_mm(expected.affine[:3, 3])} mm)")
        raise SubmissionError(what + "; copy the affine of the case's reference "
                              "(e.g. the sample submission)")


def read_labels(stream: BinaryIO, expected: Geometry) -> np.ndarray:
    """A binary label volume (bool, the expected shape) from a `.nii.gz` or `.nii` stream.

    Refused before decoding: a malformed header, another shape, axis order or affine, a
    non-integer dtype, scaled data. Refused while decoding: a truncated or corrupt gzip
    stream, more data than the header declares, labels other than 0 and 1.
    """
    try:
        return _read_labels(stream, expected)
    except (gzip.BadGzipFile, zlib.error) as e:
        raise SubmissionError(f"corrupt gzip stream ({e})") from None
    except EOFError:
        raise SubmissionError("corrupt gzip stream (it ends before its end marker)") from None


def _read_labels(stream: BinaryIO, expected: Geometry) -> np.ndarray:
    magic = stream.read(2)
    head = io.BytesIO(magic)
    source: BinaryIO = _Chain(head, stream)  # type: ignore[assignment]
    if magic == GZIP_MAGIC:
        source = gzip.GzipFile(fileobj=source, mode="rb")  # type: ignore[assignment]
    header = read_header(source)
    if header.dtype.kind not in "iub" or header.dtype.name not in (*LABEL_DTYPES, "bool"):
        raise SubmissionError(f"data type {header.dtype.name}: a label volume holds integers "
                              "(uint8 recommended)")
    if _scaled(header.slope, header.inter):
        raise SubmissionError(f"scaled data (scl_slope {header.slope:g}, scl_inter "
                              f"{header.inter:g}): write the labels unscaled")
    check_geometry(header, expected)
    gap = header.vox_offset - header.size
    if gap < 0 or gap > MAX_EXTENSION_BYTES:
        raise SubmissionError(f"vox_offset {header.vox_offset} lies "
                              + ("inside the header" if gap < 0 else
                                 f"more than {MAX_EXTENSION_BYTES} bytes after it"))
    _read_exact(source, gap, "the header extensions")
    n_bytes = int(np.prod(expected.shape)) * header.dtype.itemsize
    raw = _read_exact(source, n_bytes, "the voxel data")
    if source.read(1):
        raise SubmissionError("the file holds more data than its header declares")
    data = np.frombuffer(raw, dtype=header.dtype).reshape(expected.shape, order="F")
    bad = (data != 0) & (data != 1)
    if bad.any():
        values = np.unique(data[bad])[:5].tolist()
        raise SubmissionError(f"labels must be 0 (background) and 1 (abnormality); found "
                              f"{', '.join(map(str, values))}")
    labels: np.ndarray = data.astype(bool)
    return labels


def _read_exact(stream: BinaryIO, n: int, what: str) -> bytes:
    """`n` bytes, read in bounded chunks; fewer is a truncated file."""
    parts, left = [], n
    while left > 0:
        chunk = stream.read(min(left, 1 << 20))
        if not chunk:
            raise SubmissionError(f"the file ends inside {what} ({n - left} of {n} bytes)")
        parts.append(chunk)
        left -= len(chunk)
    return b"".join(parts)


class _Chain(io.RawIOBase):
    """Bytes already read (a peeked magic), then the rest of the stream."""

    def __init__(self, first: io.BytesIO, rest: BinaryIO):
        self.first, self.rest = first, rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def]
        data = self.first.read(len(buffer)) or self.rest.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def _x(shape: Sequence[int]) -> str:
    return "x".join(str(n) for n in shape)


def _mm(values: Sequence[float] | np.ndarray) -> str:
    return "(" + ", ".join(f"{float(v):g}" for v in values) + ")"
