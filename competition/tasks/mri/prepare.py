"""The Kaggle LGG data set (`kaggle_3m/`) -> a brain FLAIR abnormality competition.

The split is by patient, never by slice (neighbouring slices of one brain are nearly the
same picture), stratified by institution (the `TCGA_<inst>_` code: scanners and protocols
differ between sites): about a third of each site's patients are hidden (sites with a
single patient are pooled). The hidden masks
become one NIfTI volume per case with the case's spacing in its header.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from competition.errors import CompetitionError, SourceDataError
from competition.formats import nifti, slices_csv
from competition.tasks.mri import geometry, layout
from competition.tasks.preparing import (
    Staging,
    assign_usage,
    competition_yaml,
    readme_rules,
    split_test,
)

TASK_NAME = "mri"
DEFAULT_TEST_FRACTION = 1 / 3
ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # fixed member times: equal inputs give equal bytes


def prepare(source: Path, stage: Staging, seed: int, public_fraction: float, *,
            name: str = "lgg-mri", kind: str = "lgg-mri",
            test_fraction: float = DEFAULT_TEST_FRACTION,
            spacing_mm: tuple[float, float, float] = geometry.DEFAULT_SPACING_MM) -> None:
    root = layout.root_of(source)
    try:
        cases = layout.find_cases(root, masks=True)
        volumes = {c.name: layout.read_case(c, masks=True) for c in cases}
    except CompetitionError as e:
        raise SourceDataError(str(e)) from None
    names = [c.name for c in cases]
    table: dict[str, geometry.Spacing] = {}
    for folder in dict.fromkeys([Path(source), root]):
        if (folder / geometry.SPACING_FILE).is_file():
            table = geometry.read_spacing(folder / geometry.SPACING_FILE)
            break
    unknown = sorted(set(table) - set(names) - {"*"})
    if unknown:
        raise SourceDataError(f"{geometry.SPACING_FILE}: case {unknown[0]} is not in {root}")
    spacing = geometry.spacing_of(names, table, tuple(spacing_mm))  # type: ignore[arg-type]
    rng = np.random.default_rng(seed)
    train, test = split_test(names, test_fraction, rng, strata=strata(sorted(names)))
    usage = assign_usage(test, public_fraction, rng)
    by_name = {c.name: c for c in cases}

    for split, members in (("train", train), ("test", test)):
        for case_name in members:
            case = by_name[case_name]
            for n in case.slices:
                stage.copy(f"public/{split}/{case_name}/{case.image_path(n).name}",
                           case.image_path(n))
                if split == "train":
                    stage.copy(f"public/train/{case_name}/{case.mask_path(n).name}",
                               case.mask_path(n))
    stage.write("public/spacing.csv", geometry.write_spacing(spacing))
    hidden = [HiddenCase(c, _mask_of(volumes[c]), spacing[c], by_name[c].slices[0], usage[c])
              for c in test]
    write_hidden_solution(hidden, Staging(stage.root / "private"))
    stage.write("public/sample_submission.zip", sample_zip(hidden))
    rows = [(slice_id, np.zeros(volumes[c][0].shape[1:3], bool))
            for c in test for slice_id in by_name[c].slice_ids()]
    stage.write("public/sample_submission.csv", slices_csv.write_slices(rows))

    n_slices = {split: sum(len(by_name[c].slices) for c in members)
                for split, members in (("train", train), ("test", test))}
    counts = {"train": len(train), "test": len(test),
              "public": sum(u == "Public" for u in usage.values()),
              "train_slices": n_slices["train"], "test_slices": n_slices["test"],
              "institutions": len({layout.institution(n) for n in names})}
    stage.write("public/README.md", readme(name, counts, spacing_mm).encode())
    stage.write("competition.yaml", competition_yaml(
        name=name, kind=kind, task=TASK_NAME,
        title="Brain MRI FLAIR abnormality segmentation (LGG)", seed=seed,
        public_fraction=public_fraction, counts=counts,
        files={"solution": "private/solution.csv"}))


@dataclass(frozen=True)
class HiddenCase:
    """A case of a hidden solution: its mask (S, H, W), spacing, first slice number and usage
    (None: no Usage split, as cross-validation writes it)."""

    case: str
    mask: np.ndarray
    spacing: geometry.Spacing
    first_slice: int
    usage: str | None

    def labels(self) -> np.ndarray:
        """The (H, W, S) uint8 label volume, as references and submissions hold it."""
        out: np.ndarray = self.mask.transpose(1, 2, 0).astype(np.uint8)
        return out


def _mask_of(volume: tuple[np.ndarray, np.ndarray | None]) -> np.ndarray:
    mask = volume[1]
    assert mask is not None  # read with masks=True
    return mask


def write_hidden_solution(cases: Sequence[HiddenCase], stage: Staging) -> Path:
    """`solution.csv` (case,Usage,first_slice; Usage empty without a split) and
    `solution/<case>.nii.gz` (the case's spacing in its affine, which scoring reads) under
    `stage`: what `MriTask.load_solution` reads. Returns the CSV's path."""
    rows = ["case,Usage,first_slice"]
    for case in cases:
        stage.write(f"solution/{case.case}.nii.gz",
                    nifti.write_volume(case.labels(), geometry.affine(case.spacing)))
        rows.append(f"{case.case},{case.usage or ''},{case.first_slice}")
    return stage.write("solution.csv", ("\n".join(rows) + "\n").encode())


def sample_zip(cases: Sequence[HiddenCase]) -> bytes:
    """A valid, empty NIfTI submission: each case's zero volume with its affine."""
    sample = io.BytesIO()
    with zipfile.ZipFile(sample, "w", zipfile.ZIP_DEFLATED) as archive:
        for case in cases:
            empty = np.zeros_like(case.labels())
            archive.writestr(zipfile.ZipInfo(f"{case.case}.nii.gz", ZIP_TIME),
                             nifti.write_volume(empty, geometry.affine(case.spacing)))
    return sample.getvalue()


def strata(names: list[str]) -> list[str]:
    """Each case's institution; institutions with a single patient are pooled (one patient
    cannot be split, and would otherwise always be trained on)."""
    sites = [layout.institution(n) for n in names]
    sizes = {site: sites.count(site) for site in sites}
    return [site if sizes[site] >= 2 else "(single-patient sites)" for site in sites]


def readme(name: str, counts: dict[str, int], spacing_mm: tuple[float, ...]) -> str:
    """The README a participant finds in `public/`: task, files, formats, metrics, rules."""
    s = spacing_mm
    return f"""# {name}: brain MRI FLAIR abnormality segmentation

Segment the FLAIR abnormality (lower-grade glioma) in brain MRI volumes: for every voxel of
every test patient, say whether it is abnormal.

## Files
- `train/<case>/<case>_<n>.tif`: {counts['train']} patients ({counts['train_slices']} slices),
  the Kaggle LGG layout: 3 channels per slice (pre-contrast, FLAIR, post-contrast; a missing
  sequence is replaced by FLAIR), with `<case>_<n>_mask.tif` (255 = abnormal).
- `test/<case>/<case>_<n>.tif`: {counts['test']} patients ({counts['test_slices']} slices),
  masks hidden. Slices are numbered 1..n; order them by number, not as strings.
- `spacing.csv`: every case's voxel spacing in mm (row, column, slice). The default is
  {s[0]:g} x {s[1]:g} mm in-plane and {s[2]:g} mm between slices (the data carries none).
- `sample_submission.zip` (NIfTI) and `sample_submission.csv` (RLE): valid, empty.

The split is by patient (never by slice), stratified by institution (`TCGA_<inst>_`).

## Submission format
A zip (or, with the command line, a folder) of one NIfTI label volume per test case,
`<case>.nii.gz`: the array (rows, columns, slices) = (H, W, n), slices in numeric order,
integer type (uint8), 1 = abnormal, 0 = background, with **the affine of the case's
reference** (copy it from `sample_submission.zip`: rows run posterior, columns to the
patient's left, slices up, axis codes P, L, S, with the case's spacing). Another shape,
type, label, axis order or affine is refused with a message saying which.

Or a Kaggle-style CSV `ImageId,EncodedPixels` with one row per test slice: `ImageId` is
`<case>_<n>`, `EncodedPixels` the slice's mask run-length encoded (pairs `start length`,
1-indexed, numbered top to bottom then left to right), empty for an empty slice.

## Metrics
Per patient (the whole volume, distances in mm with the case's spacing): Dice, Hausdorff
distance (HD), HD95 (the 95th percentile of the pooled surface distances, MedPy's
convention) and the average symmetric surface distance (ASSD). Empty masks: truth and
prediction both empty give Dice 1 and distances 0; exactly one empty gives Dice 0 and
infinite distances. **In means over patients an infinite distance counts as the volume's
diagonal in mm.** The leaderboard ranks by the **mean per-patient Dice** (higher is better)
and shows the mean HD, HD95 and ASSD; an organizer may rank instead by the mean of
per-patient ranks over all four metrics (`ranking: mean_of_ranks`, as BraTS does).

{readme_rules(counts, "patients")}"""
