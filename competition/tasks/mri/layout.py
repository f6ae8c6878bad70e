"""The Kaggle LGG layout (`kaggle_3m/<case>/<case>_<n>.tif` and `<case>_<n>_mask.tif`):
cases, their slices in numeric order, and the institution code a case's name carries."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile

from competition.errors import CompetitionError

CASE_PATTERN = re.compile(r"^TCGA_([A-Z0-9]+)_[A-Za-z0-9]+_\d+$")
MASK_SUFFIX = "_mask"


@dataclass(frozen=True)
class Case:
    name: str
    folder: Path
    slices: tuple[int, ...]  # slice numbers, ascending (1..n in the published data)

    @property
    def institution(self) -> str:
        return institution(self.name)

    def image_path(self, n: int) -> Path:
        return self.folder / f"{self.name}_{n}.tif"

    def mask_path(self, n: int) -> Path:
        return self.folder / f"{self.name}_{n}{MASK_SUFFIX}.tif"

    def slice_ids(self) -> list[str]:
        """`<case>_<n>`: the ImageIds of the Kaggle-style CSV."""
        return [f"{self.name}_{n}" for n in self.slices]


def institution(case: str) -> str:
    """The TCGA tissue source site of a case (`TCGA_<inst>_...`); "" when it has none."""
    match = CASE_PATTERN.match(case)
    return match.group(1) if match else ""


def root_of(source: Path) -> Path:
    """The folder holding the case folders: `source` or its `kaggle_3m/`."""
    inner = Path(source) / "kaggle_3m"
    return inner if inner.is_dir() else Path(source)


def find_cases(folder: Path, masks: bool) -> list[Case]:
    """The case folders of `folder`, each with its slices in numeric order (not the file
    system's or the string order: `_10` comes after `_9`). With `masks`, every slice needs
    its mask."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CompetitionError(f"{folder}: folder not found")
    cases = []
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        numbers = []
        pattern = re.compile(rf"^{re.escape(sub.name)}_(\d+)\.tif$")
        for path in sub.iterdir():
            match = pattern.match(path.name)
            if match:
                numbers.append(int(match.group(1)))
        if not numbers:
            continue
        numbers.sort()
        if len(set(numbers)) != len(numbers):
            raise CompetitionError(f"{sub}: a slice number appears twice")
        if numbers != list(range(numbers[0], numbers[0] + len(numbers))):
            gap = next(a + 1 for a, b in zip(numbers, numbers[1:], strict=False) if b != a + 1)
            raise CompetitionError(f"{sub}: slice {gap} is missing (slices {numbers[0]}.."
                                   f"{numbers[-1]} must be consecutive)")
        case = Case(sub.name, sub, tuple(numbers))
        if masks:
            absent = [n for n in numbers if not case.mask_path(n).is_file()]
            if absent:
                raise CompetitionError(f"{case.mask_path(absent[0])}: missing (every slice "
                                       "needs its mask)")
        cases.append(case)
    if not cases:
        raise CompetitionError(f"{folder}: no cases in the Kaggle LGG layout "
                               "(<case>/<case>_<n>.tif)")
    return cases


def read_tif(path: Path) -> np.ndarray:
    try:
        array: np.ndarray = tifffile.imread(path)
    except Exception as e:  # tifffile raises many types on damaged files
        raise CompetitionError(f"{path}: unreadable TIFF ({type(e).__name__}: {e})") from None
    return array


def read_image(path: Path) -> np.ndarray:
    """One slice, (H, W, 3) uint8: pre-contrast, FLAIR, post-contrast."""
    image = read_tif(path)
    if image.dtype != np.uint8:
        raise CompetitionError(f"{path}: expected 8-bit channels, got {image.dtype}")
    if image.ndim == 2:  # a grey slice: FLAIR alone, replicated as the data set does
        image = np.repeat(image[..., None], 3, axis=-1)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise CompetitionError(f"{path}: expected 3 channels (H, W, 3), got shape "
                               f"{image.shape}")
    return image


def read_mask(path: Path, shape: tuple[int, int]) -> np.ndarray:
    """One slice's mask, (H, W) bool; the data set stores 0 and 255."""
    mask = read_tif(path)
    if mask.ndim == 3 and mask.shape[-1] in (3, 4):
        mask = mask[..., 0]
    if mask.shape != shape:
        raise CompetitionError(f"{path}: mask shape {mask.shape} differs from its image's "
                               f"{shape}")
    values = np.unique(mask)
    if not set(values.tolist()) <= {0, 1, 255}:
        raise CompetitionError(f"{path}: a mask holds 0 and 255; found {values[:6].tolist()}")
    out: np.ndarray = mask > 0
    return out


def read_case(case: Case, masks: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """(slices, H, W, 3) uint8 images and, with `masks`, (slices, H, W) bool masks."""
    images = [read_image(case.image_path(n)) for n in case.slices]
    shape = images[0].shape
    for n, image in zip(case.slices, images, strict=True):
        if image.shape != shape:
            raise CompetitionError(f"{case.image_path(n)}: shape {image.shape} differs from "
                                   f"slice {case.slices[0]}'s {shape}")
    volume = np.stack(images)
    if not masks:
        return volume, None
    return volume, np.stack([read_mask(case.mask_path(n), shape[:2]) for n in case.slices])
