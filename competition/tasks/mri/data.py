"""What MRI entries train on and predict: volumes of 3-channel slices, their masks, spacing.

Maps are keyed by slice (`<case>_<n>`, the Kaggle ImageId), (H, W, 1) abnormality
probability; predictions are one (S, H, W) boolean volume per case.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from competition.errors import CompetitionError
from competition.formats import nifti
from competition.tasks.base import (
    CvItem,
    DataFiles,
    Maps,
    PixelItem,
    PredictionMaps,
    Validation,
)
from competition.tasks.mri import geometry, layout
from competition.tasks.mri.prepare import HiddenCase, write_hidden_solution
from competition.tasks.preparing import Staging

FLAIR = 1  # the channel the abnormality is defined on
Masks = dict[str, np.ndarray]  # (S, H, W) bool by case: what entries predict
ZIP_TIME = (1980, 1, 1, 0, 0, 0)


@dataclass
class MriData:
    cases: list[str]
    volumes: list[np.ndarray]  # (S, H, W, 3) uint8: pre-contrast, FLAIR, post-contrast
    spacing: list[geometry.Spacing]  # (row, col, slice) mm
    first_slices: list[int]
    masks: list[np.ndarray] | None = None  # (S, H, W) bool; training only

    def slice_ids(self, k: int) -> list[str]:
        first = self.first_slices[k]
        return [f"{self.cases[k]}_{first + z}" for z in range(len(self.volumes[k]))]

    @property
    def ids(self) -> list[str]:
        """Every slice's id: the keys of maps."""
        return [i for k in range(len(self.cases)) for i in self.slice_ids(k)]

    def subset(self, keep: list[int]) -> MriData:
        return MriData([self.cases[k] for k in keep], [self.volumes[k] for k in keep],
                       [self.spacing[k] for k in keep], [self.first_slices[k] for k in keep],
                       None if self.masks is None else [self.masks[k] for k in keep])


def _spacing_table(public: Path) -> dict[str, geometry.Spacing]:
    path = Path(public) / geometry.SPACING_FILE
    return geometry.read_spacing(path) if path.is_file() else {}


def load_folder(folder: Path, public: Path, masks: bool) -> MriData:
    cases = layout.find_cases(folder, masks)
    spacing = geometry.spacing_of([c.name for c in cases], _spacing_table(public))
    volumes, labels = [], []
    for case in cases:
        volume, mask = layout.read_case(case, masks)
        volumes.append(volume)
        labels.append(mask)
    return MriData([c.name for c in cases], volumes, [spacing[c.name] for c in cases],
                   [c.slices[0] for c in cases],
                   [m for m in labels if m is not None] if masks else None)


def write_zip(members: Mapping[str, bytes]) -> bytes:
    """A zip of named files with fixed times, in name order: equal inputs, equal bytes."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in sorted(members):
            archive.writestr(zipfile.ZipInfo(name, ZIP_TIME), members[name])
    return out.getvalue()


def split_slice_id(slice_id: str) -> tuple[str, int]:
    case, _, number = slice_id.rpartition("_")
    if not case or not number.isdigit():
        raise CompetitionError(f"map key {slice_id!r} is not a slice id (<case>_<n>)")
    return case, int(number)


def volumes_from_maps(maps: Maps) -> dict[str, np.ndarray]:
    """(S, H, W) float32 probability volumes by case, slices in numeric order."""
    by_case: dict[str, list[tuple[int, np.ndarray]]] = {}
    for key, m in maps.items():
        case, number = split_slice_id(key)
        m = np.asarray(m, np.float32)
        by_case.setdefault(case, []).append((number, m[..., 0] if m.ndim == 3 else m))
    return {case: np.stack([m for _, m in sorted(slices, key=lambda s: s[0])])
            for case, slices in by_case.items()}


SEQUENCES = ("pre-contrast", "FLAIR", "post-contrast")  # the channels, in order


def stored_as_flair(volume: np.ndarray) -> list[str]:
    """The sequences of an (S, H, W, 3) volume that are FLAIR copies: the data set stores a
    sequence that was not acquired that way (mean absolute difference under one grey level)."""
    flair = volume[..., FLAIR].astype(np.int16)
    if not flair.any():  # a blank FLAIR copies nothing (and an empty volume has no mean)
        return []
    return [name for c, name in enumerate(SEQUENCES) if c != FLAIR
            and float(np.mean(np.abs(volume[..., c].astype(np.int16) - flair))) < 1.0]


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 3D connected component (face-connected) of a case's mask."""
    labels, n = ndimage.label(mask)
    if n <= 1:
        return np.asarray(mask, bool)
    sizes = np.bincount(labels.ravel())[1:]
    out: np.ndarray = labels == int(np.argmax(sizes)) + 1
    return out


class MriFiles(DataFiles[MriData, Masks]):
    """The `DataFiles` part of the MRI task: Kaggle LGG case folders read, masks by case
    written as a zip of NIfTI volumes, FLAIR slices as pixel items."""

    test_inputs = ("test",)

    def sample_entry(self) -> dict[str, str]:
        from competition.tasks.mri import sample_entry

        return {"entry.py": sample_entry.ENTRY, "config.yaml": sample_entry.CONFIG}

    def load_train(self, public: Path) -> MriData:
        return load_folder(Path(public) / "train", public, masks=True)

    def load_inputs(self, public: Path, folder: Path | None = None) -> MriData:
        return load_folder(Path(folder) if folder else Path(public) / "test", public,
                           masks=False)

    def write_submission(self, inputs: MriData, predictions: Mapping[str, np.ndarray]
                         ) -> bytes:
        """(S, H, W) masks by case -> a zip of `<case>.nii.gz` (H, W, S) uint8 volumes, each
        with its case's affine."""
        members = {}
        for k, case in enumerate(inputs.cases):
            if case not in predictions:
                raise CompetitionError(f"no prediction for case {case}")
            labels = np.asarray(predictions[case]).astype(np.uint8).transpose(1, 2, 0)
            members[f"{case}.nii.gz"] = nifti.write_volume(labels,
                                                           geometry.affine(inputs.spacing[k]))
        return write_zip(members)

    def hold_out(self, train: MriData,
                 seed: int = 0) -> tuple[MriData, Validation[MriData] | None]:
        """Training data less one patient drawn with `seed` (a whole patient: its slices
        would leak into training otherwise); the validation picture is its FLAIR volume."""
        if len(train.cases) < 2 or train.masks is None:
            return train, None
        k = int(np.random.default_rng(seed).integers(len(train.cases)))
        rest = [i for i in range(len(train.cases)) if i != k]
        held = train.subset([k])
        return train.subset(rest), Validation(train.cases[k], MriData(
            held.cases, held.volumes, held.spacing, held.first_slices), train.volumes[k],
            train.masks[k])

    # --- cross-validation: whole patients, stratified by institution ------------------------

    def cv_items(self, train: MriData) -> list[CvItem]:
        """One item per patient (its slices would leak across folds otherwise), stratified
        by institution as the test split is (scanners and protocols differ by site)."""
        return [CvItem(case, group=case, stratum=layout.institution(case))
                for case in train.cases]

    def take(self, data: MriData, positions: Sequence[int]) -> MriData:
        return data.subset(list(positions))

    def inputs_of(self, data: MriData) -> MriData:
        return MriData(data.cases, data.volumes, data.spacing, data.first_slices)

    def write_solution(self, data: MriData, folder: Path) -> Path:
        """The cases' masks as prepare writes the hidden solution, without a Usage split."""
        if data.masks is None:
            raise CompetitionError("a solution needs the cases' masks")
        cases = [HiddenCase(case, mask, spacing, first, None) for case, mask, spacing, first
                 in zip(data.cases, data.masks, data.spacing, data.first_slices, strict=True)]
        return write_hidden_solution(cases, Staging(Path(folder)))

    def pixel_items(self, data: MriData) -> list[PixelItem]:
        """Each slice's FLAIR channel as the grey image (the abnormality is defined on it);
        with masks, the abnormality as the one target channel."""
        items = []
        for k, volume in enumerate(data.volumes):
            for z, slice_id in enumerate(data.slice_ids(k)):
                item = PixelItem(slice_id, volume[z, ..., FLAIR].astype(np.float32))
                if data.masks is not None:
                    mask = data.masks[k][z]
                    item.targets = mask[..., None].astype(np.float32)
                    item.objects = ndimage.label(mask)[0].astype(np.int32)
                items.append(item)
        return items


class MriMaps(PredictionMaps[MriData, Masks]):
    """The maps of the MRI task: (H, W, 1) abnormality probability by slice, masks by
    case."""

    def predictions_from_maps(self, maps: Maps, config: Mapping[str, Any]) -> Masks:
        """Masks by case: probability > `threshold` (0.5), optionally only each case's
        largest connected component (`largest_component`)."""
        threshold = float(config.get("threshold", 0.5))
        keep_largest = bool(config.get("largest_component", False))
        out = {}
        for case, volume in volumes_from_maps(maps).items():
            mask = volume > threshold
            out[case] = largest_component(mask) if keep_largest else mask
        return out

    def maps_from_predictions(self, inputs: MriData,
                              predictions: Mapping[str, np.ndarray]) -> Maps:
        """Hard 0/1 maps by slice."""
        maps: Maps = {}
        for k, case in enumerate(inputs.cases):
            volume = np.asarray(predictions[case], np.float32)
            for z, slice_id in enumerate(inputs.slice_ids(k)):
                maps[slice_id] = volume[z][..., None]
        return maps
