"""What nuclei entries train on and predict: Kaggle-layout images and their instance labels."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import numpy.typing as npt
from PIL import Image
from skimage.color import rgb2hed

from competition.errors import CompetitionError, SubmissionError
from competition.formats import nuclei_csv, rle
from competition.tasks.base import CvItem, DataFiles, PixelItem, Validation
from competition.tasks.nuclei import appearance, prepare
from competition.tasks.nuclei.postprocess import boundary_target


@dataclass
class NucleiData:
    ids: list[str]
    images: list[np.ndarray]  # RGB uint8 (H, W, 3)
    labels: list[np.ndarray] | None = None  # instance labels int32 (H, W), training only


def read_rgb(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except Exception as e:  # Pillow raises many types on damaged files
        raise CompetitionError(f"{path}: unreadable image ({type(e).__name__}: {e})") from None


def kaggle_images(folder: Path) -> tuple[list[str], list[np.ndarray]]:
    """Images of a folder in Kaggle's layout: `<id>/images/<id>.png`."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CompetitionError(f"{folder}: folder not found")
    ids = sorted(p.name for p in folder.iterdir() if (p / "images" / f"{p.name}.png").is_file())
    if not ids:
        raise CompetitionError(f"{folder}: no images in Kaggle's layout (<id>/images/<id>.png)")
    return ids, [read_rgb(folder / i / "images" / f"{i}.png") for i in ids]


def nuclei_gray(rgb: np.ndarray) -> np.ndarray:
    """The grey image with nuclei bright: bright backgrounds (bright-field, stained tissue,
    where nuclei are dark) are inverted."""
    gray: npt.NDArray[np.float32] = rgb.astype(np.float32).mean(axis=-1)
    return 255 - gray if np.median(gray) > 127 else gray


# Optical density of 8-bit light, scaled back to 0..255: -log((I + 1) / 256) * 255 / log(256)
_OD_SCALE = 255 / np.log(256)


def stain_gray(rgb: np.ndarray) -> np.ndarray:
    """The grey image with nuclei bright, per modality (`appearance.modality`):
    fluorescence as it is; bright-field as optical density (absorbing nuclei bright, and
    light's multiplicative shading turned additive); stained tissue as the hematoxylin
    (nuclear stain) density of Ruifrok and Johnston's colour deconvolution, so that eosin
    (cytoplasm, pink) and the background stay dark. 0..255, float32 (the stain density
    stretched to its 99.9th percentile)."""
    kind = appearance.modality(rgb)
    f = np.asarray(rgb, np.float32)[..., :3]
    if kind == "fluorescence":
        gray: npt.NDArray[np.float32] = f.mean(axis=-1)
        return gray
    if kind == "brightfield":
        density: npt.NDArray[np.float32] = (-np.log((f + 1) / 256).mean(axis=-1)
                                            * _OD_SCALE).astype(np.float32)
        return density
    # skimage's H channel: the hematoxylin optical density, stretched to 0..255 (its scale
    # depends on the stain's strength; every consumer stretches the contrast anyway)
    hematoxylin: npt.NDArray[np.float64] = rgb2hed(np.asarray(rgb)[..., :3])[..., 0]
    low, high = np.percentile(hematoxylin, (0, 99.9))
    stained: npt.NDArray[np.float32] = (np.clip((hematoxylin - low) / max(high - low, 1e-9),
                                                0, 1) * 255).astype(np.float32)
    return stained


VIEWS = {"grey": nuclei_gray, "stain": stain_gray}


Instances = dict[str, np.ndarray]  # (H, W) instance labels by ImageId: what entries predict


class NucleiFiles(DataFiles[NucleiData, Instances]):
    """The `DataFiles` part of the nuclei task: Kaggle-layout images and labels read,
    instances written as Kaggle's RLE CSV, images as pixel items."""

    test_inputs = ("test",)

    def sample_entry(self) -> dict[str, str]:
        from competition.tasks.nuclei import sample_entry

        return {"entry.py": sample_entry.ENTRY, "config.yaml": sample_entry.CONFIG}

    def load_train(self, public: Path) -> NucleiData:
        ids, images = kaggle_images(public / "train")
        shapes = {i: im.shape[:2] for i, im in zip(ids, images, strict=True)}
        path = public / "train_labels.csv"
        try:
            decoded = nuclei_csv.read_submission(path.read_bytes(), shapes)
            labels = [decoded[i].label_image(i) for i in ids]
        except SubmissionError as e:
            raise CompetitionError(str(e.located(str(path)))) from None
        return NucleiData(ids, images, labels)

    def load_inputs(self, public: Path, folder: Path | None = None) -> NucleiData:
        return NucleiData(*kaggle_images(folder or public / "test"))

    def with_hidden(self, train: NucleiData, inputs: NucleiData,
                    solution: Mapping[str, nuclei_csv.NucleiImage]) -> NucleiData:
        """The training images and the hidden ones, each with its instance labels."""
        if train.labels is None:
            raise CompetitionError("a final fit needs the training labels")
        missing = sorted(set(inputs.ids) - set(solution))
        if missing:
            raise CompetitionError(f"hidden image {missing[0]} has no labels in the solution")
        both = sorted(set(inputs.ids) & set(train.ids))
        if both:
            raise CompetitionError(f"image {both[0]} is both a training and a hidden image")
        return NucleiData(train.ids + inputs.ids, train.images + inputs.images,
                          train.labels + [solution[i].label_image(i) for i in inputs.ids])

    def write_submission(self, inputs: NucleiData, predictions: Instances) -> bytes:
        """Instance label images by ImageId -> Kaggle's RLE CSV (a row per nucleus)."""
        rows = []
        for image_id in inputs.ids:
            encoded = rle.encode_labels(predictions[image_id]) or [""]
            rows += [(image_id, enc) for enc in encoded]
        return nuclei_csv.write_csv(rows, nuclei_csv.SUBMISSION_HEADER)

    def hold_out(self, train: NucleiData,
                 seed: int = 0) -> tuple[NucleiData, Validation[NucleiData] | None]:
        """Training data less one image drawn with `seed` (None when there are fewer than
        two)."""
        if len(train.ids) < 2 or train.labels is None:
            return train, None
        k = int(np.random.default_rng(seed).integers(len(train.ids)))
        rest = [i for i in range(len(train.ids)) if i != k]
        return (NucleiData([train.ids[i] for i in rest], [train.images[i] for i in rest],
                           [train.labels[i] for i in rest]),
                Validation(train.ids[k], NucleiData([train.ids[k]], [train.images[k]]),
                           train.images[k], train.labels[k]))

    def cv_items(self, train: NucleiData) -> list[CvItem]:
        """One group per image, stratified by appearance type (`appearance.TYPES`): the
        kinds differ most in how hard they are."""
        return [CvItem(i, i, appearance.describe(rgb).type)
                for i, rgb in zip(train.ids, train.images, strict=True)]

    cv_groupings: ClassVar[dict[str, str]] = {
        "source": "whole acquisition sets (image size and modality): each fold holds out "
                  "sets the entry never trained on, as the stage-1 test does"}

    def cv_grouped(self, train: NucleiData, groups: str) -> list[CvItem]:
        if groups != "source":
            return super().cv_grouped(train, groups)
        return [CvItem(item.key, appearance.source(rgb), item.stratum)
                for item, rgb in zip(self.cv_items(train), train.images, strict=True)]

    def item_features(self, data: NucleiData) -> np.ndarray:
        """Each image's appearance (`Appearance.vector`: nucleus scale, crowding, clumps,
        contrast, background texture, brightness, colour)."""
        return np.array([appearance.describe(rgb).vector() for rgb in data.images])

    def take(self, data: NucleiData, positions: Sequence[int]) -> NucleiData:
        return NucleiData([data.ids[k] for k in positions], [data.images[k] for k in positions],
                          None if data.labels is None else [data.labels[k] for k in positions])

    def inputs_of(self, data: NucleiData) -> NucleiData:
        return NucleiData(data.ids, data.images)

    def write_solution(self, data: NucleiData, folder: Path) -> Path:
        """`solution.csv` and its types sidecar, as `prepare` writes them."""
        if data.labels is None:
            raise CompetitionError("a solution needs labelled images")
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "solution.csv"
        shapes = {i: im.shape[:2] for i, im in zip(data.ids, data.images, strict=True)}
        objects = {i: rle.encode_labels(lab) for i, lab in zip(data.ids, data.labels,
                                                                 strict=True)}
        path.write_bytes(prepare.solution_csv(data.ids, shapes, objects))
        types = {i: appearance.describe(rgb) for i, rgb in zip(data.ids, data.images,
                                                                strict=True)}
        path.with_name(path.stem + prepare.TYPES_SUFFIX).write_bytes(prepare.types_csv(types))
        return path

    def pixel_items(self, data: NucleiData, view: str = "grey") -> list[PixelItem]:
        """Each image grey (nuclei bright); with labels, targets foreground and boundary.
        `view` (an entry's `pixels: {view: ...}`): "grey" the mean of the channels, inverted
        on bright backgrounds; "stain" per modality (`stain_gray`)."""
        if view not in VIEWS:
            raise CompetitionError(f"pixel view {view!r}: choose one of {', '.join(VIEWS)}")
        to_gray = VIEWS[view]
        items = []
        for k, (image_id, rgb) in enumerate(zip(data.ids, data.images, strict=True)):
            item = PixelItem(image_id, to_gray(rgb))
            if data.labels is not None:
                labels = data.labels[k]
                item.targets = np.stack([labels > 0, boundary_target(labels)], -1).astype(
                    np.float32)
                item.objects = labels
            items.append(item)
        return items
