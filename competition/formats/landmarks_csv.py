"""Landmark CSVs: `specimen,landmark,x,y,z` (solutions add `Usage`)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from competition.errors import SubmissionError
from competition.formats.text import read_csv_rows

HEADER = ["specimen", "landmark", "x", "y", "z"]


def read_points(
    data: bytes,
    expected: dict[str, list[str]] | None = None,
    with_usage: bool = False,
) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, str]]:
    """Points per specimen and landmark, and each specimen's Usage (when `with_usage`).

    With `expected` (specimen -> landmark names), every specimen and landmark must appear once.
    """
    # A valid file has one row per expected point: far more lines are refused before they
    # are split (room is left for blank lines and for naming a duplicate).
    max_lines = None if expected is None else 2 * sum(map(len, expected.values())) + 100
    rows = read_csv_rows(data, HEADER + (["Usage"] if with_usage else []), max_lines)
    points: dict[str, dict[str, np.ndarray]] = {}
    usages: dict[str, str] = {}
    first_line: dict[tuple[str, str], int] = {}
    for line, fields in rows:
        specimen, landmark = fields[0].strip(), fields[1].strip()
        where = f"line {line} (specimen {specimen[:60]}, landmark {landmark[:20]})"
        if not specimen or not landmark:
            raise SubmissionError("empty specimen or landmark name", where=f"line {line}")
        if expected is not None:
            if specimen not in expected:
                raise SubmissionError("specimen is not a test specimen of this competition",
                                      where=where)
            if landmark not in expected[specimen]:
                raise SubmissionError("unknown landmark name", where=where)
        key = (specimen, landmark)
        if key in first_line:
            raise SubmissionError(f"duplicate of line {first_line[key]}", where=where)
        first_line[key] = line
        try:
            xyz = np.array([float(f) for f in fields[2:5]])
        except ValueError:
            raise SubmissionError("x, y, z must be numbers", where=where) from None
        if not all(math.isfinite(v) for v in xyz):
            raise SubmissionError("x, y, z must be finite (no NaN or inf)", where=where)
        points.setdefault(specimen, {})[landmark] = xyz
        if with_usage:
            usage = fields[5].strip()
            if usage not in ("Public", "Private"):
                raise SubmissionError(f"Usage {usage!r} is not Public or Private", where=where)
            if usages.setdefault(specimen, usage) != usage:
                raise SubmissionError("specimen has two Usages", where=where)
    if expected is not None:
        for specimen, names in expected.items():
            got = points.get(specimen, {})
            missing = [n for n in names if n not in got]
            if missing:
                raise SubmissionError(
                    f"{len(missing)} landmark(s) missing (first: {missing[0]}); every test "
                    "specimen and landmark must appear once",
                    where=f"specimen {specimen}",
                )
    return points, usages


def write_points(rows: list[tuple[Any, ...]], usage: bool = False) -> bytes:
    header = HEADER + (["Usage"] if usage else [])
    out = [",".join(header)]
    for row in rows:
        specimen, landmark, xyz = row[0], row[1], row[2]
        fields = [specimen, landmark, *(f"{v:.6f}" for v in xyz)]
        if usage:
            fields.append(row[3])
        out.append(",".join(fields))
    return ("\n".join(out) + "\n").encode()
