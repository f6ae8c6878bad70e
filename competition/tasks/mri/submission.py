"""An MRI submission: a zip or folder of `<case>.nii.gz` label volumes, or a Kaggle-style CSV
with one RLE row per slice. Case names are checked from the listing before any volume is
read; each volume's header before its voxels (see `competition.formats.nifti`)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import PurePosixPath

import numpy as np

from competition.errors import SubmissionError
from competition.formats import nifti, slices_csv
from competition.formats.files import Member, SubmissionFile

SUFFIXES = (".nii.gz", ".nii")


@dataclass(frozen=True)
class Reference:
    """A hidden case as a submission may know it: its name, geometry and slice numbers (the
    public facts), its usage and its mask (the hidden one)."""

    case: str
    geometry: nifti.Geometry  # of the (H, W, S) volume
    first_slice: int
    usage: str | None
    truth: np.ndarray  # (H, W, S) bool

    def slice_ids(self) -> list[str]:
        return [f"{self.case}_{self.first_slice + z}" for z in range(self.geometry.shape[2])]


def case_of(member: str) -> str | None:
    name = PurePosixPath(member).name
    for suffix in SUFFIXES:
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return None


def volume_members(submission: SubmissionFile, references: dict[str, Reference]
                   ) -> dict[str, Member]:
    """Each case's member, from the listing alone: `<case>.nii.gz` at the top level or all
    in one folder; a missing, unknown or repeated case is refused naming it."""
    members = submission.members()
    folders = {PurePosixPath(m.name).parent.as_posix() for m in members}
    if len(folders) > 1:
        raise SubmissionError("volumes must lie side by side (found folders "
                              f"{', '.join(sorted(folders)[:3])})")
    found: dict[str, Member] = {}
    for m in members:
        case = case_of(m.name)
        if case is None:
            raise SubmissionError("not a NIfTI volume: name each file <case>.nii.gz",
                                  where=m.name)
        if case not in references:
            raise SubmissionError(f"{case} is not a test case (extra file)", where=m.name)
        if case in found:
            raise SubmissionError(f"case {case} has two volumes ({found[case].name})",
                                  where=m.name)
        found[case] = m
    missing = sorted(set(references) - set(found))
    if missing:
        raise SubmissionError(f"{len(missing)} test case(s) have no volume, e.g. "
                              f"{', '.join(missing[:3])}.nii.gz")
    return found


def read_volumes(submission: SubmissionFile, references: dict[str, Reference]
                 ) -> Iterator[tuple[str, np.ndarray]]:
    """(case, (H, W, S) bool) in the references' order, one volume read at a time."""
    if submission.kind == "file":
        yield from _read_csv(submission, references)
        return
    members = volume_members(submission, references)
    for case, ref in references.items():
        member = members[case]
        try:
            with submission.open_member(member) as stream:
                yield case, nifti.read_labels(stream, ref.geometry)
        except SubmissionError as e:
            where = f"{member.name}" + (f": {e.where}" if e.where else "")
            raise SubmissionError(e.rule, where=where) from None


def _read_csv(submission: SubmissionFile, references: dict[str, Reference]
              ) -> Iterator[tuple[str, np.ndarray]]:
    data = submission.read_bytes()
    if data[:2] == nifti.GZIP_MAGIC or data[:4] in (b"\x5c\x01\x00\x00", b"\x00\x00\x01\x5c"):
        raise SubmissionError("a single volume: submit a zip (or folder) of one "
                              "<case>.nii.gz per test case, or the CSV")
    shapes = {slice_id: (ref.geometry.shape[0], ref.geometry.shape[1])
              for ref in references.values()
              for slice_id in ref.slice_ids()}
    runs = slices_csv.read_slices(data, shapes)
    for case, ref in references.items():
        h, w, _ = ref.geometry.shape
        volume = np.stack([slices_csv.slice_mask(runs[s], (h, w)) for s in ref.slice_ids()],
                          axis=-1)
        yield case, volume
