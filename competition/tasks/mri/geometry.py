"""Where an LGG volume's voxels are: spacing (the TIFFs carry none) and orientation.

A case's volume is the array (row, column, slice) = (H, W, S) of its slices in numeric
order. The slices are shown the radiological way (rows run anterior to posterior, columns
the patient's right to left), and slice numbers are taken to rise towards the vertex, so
the array axes point P, L, S (nibabel's axis codes); the affine says so, and a submission's
affine must say the same.

Spacing: the data set's README gives none. In-plane, the 256 x 256 slices span a head's
field of view of about 220-260 mm: 1 mm. Between slices: the 110 patients have 20 to 88
slices (median 36) covering a whole brain of about 150-180 mm, so the typical FLAIR series
is a clinical thick-slice one, about 5 mm. The default is therefore (1, 1, 5) mm, and a
spacing file (`spacing.csv`: case,row_mm,col_mm,slice_mm; case `*` sets the default) in the
source folder overrides it per case. The prepared competition publishes every case's spacing
(public/spacing.csv) and writes it into each reference's NIfTI header, which scoring reads.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from competition.errors import SourceDataError, SubmissionError
from competition.formats import nifti
from competition.formats.text import read_csv_rows

Spacing = tuple[float, float, float]
DEFAULT_SPACING_MM: Spacing = (1.0, 1.0, 5.0)
AXES = ((1, -1), (0, -1), (2, 1))  # rows -> posterior, columns -> patient's left, slices up
SPACING_HEADER = ["case", "row_mm", "col_mm", "slice_mm"]
SPACING_FILE = "spacing.csv"


def affine(spacing: Sequence[float]) -> np.ndarray:
    return nifti.affine_from_spacing(spacing, AXES)


def geometry(shape: tuple[int, int, int], spacing: Sequence[float]) -> nifti.Geometry:
    """The geometry of an (H, W, S) volume with this spacing."""
    return nifti.Geometry(tuple(int(n) for n in shape), affine(spacing))


def read_spacing(path: Path) -> dict[str, Spacing]:
    """A spacing file's rows by case (`*`: every case not listed)."""
    try:
        rows = read_csv_rows(Path(path).read_bytes(), SPACING_HEADER)
    except SubmissionError as e:
        raise SourceDataError(str(e.located(str(path)))) from None
    except OSError as e:
        raise SourceDataError(f"{path}: unreadable ({e.strerror or e})") from None
    out: dict[str, Spacing] = {}
    for line, fields in rows:
        case = fields[0].strip()
        try:
            values = tuple(float(v) for v in fields[1:])
        except ValueError:
            raise SourceDataError(f"{path}: line {line}: spacings must be numbers (mm)") \
                from None
        if not all(np.isfinite(v) and v > 0 for v in values):
            raise SourceDataError(f"{path}: line {line}: spacings must be positive (mm)")
        if case in out:
            raise SourceDataError(f"{path}: line {line}: case {case} is listed twice")
        out[case] = (values[0], values[1], values[2])
    return out


def spacing_of(cases: Sequence[str], table: Mapping[str, Spacing],
               default: Spacing = DEFAULT_SPACING_MM) -> dict[str, Spacing]:
    base = table.get("*", default)
    return {case: table.get(case, base) for case in cases}


def write_spacing(spacing: Mapping[str, Spacing]) -> bytes:
    lines = [",".join(SPACING_HEADER)] + [
        f"{case},{s[0]:g},{s[1]:g},{s[2]:g}" for case, s in sorted(spacing.items())]
    return ("\n".join(lines) + "\n").encode()
