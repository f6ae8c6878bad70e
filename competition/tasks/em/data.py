"""What EM entries train on and predict: slices of a TIFF stack, with cell labels."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from competition.errors import CompetitionError, SubmissionError
from competition.formats import em_tiff
from competition.tasks.base import CvItem, DataFiles, PixelItem, Validation


@dataclass
class EmData:
    volume: np.ndarray  # (slices, H, W) uint8
    labels: np.ndarray | None = None  # 255 = cell, 0 = membrane; training only

    @property
    def ids(self) -> list[str]:
        """Slices by number: the item ids of maps."""
        return [str(z) for z in range(len(self.volume))]


def read_stack(path: Path) -> np.ndarray:
    try:
        return em_tiff.read_stack(Path(path).read_bytes())
    except SubmissionError as e:
        raise CompetitionError(str(e.located(str(path)))) from None
    except OSError as e:
        raise CompetitionError(f"{path}: unreadable ({e.strerror or e})") from None


class EmFiles(DataFiles[EmData, np.ndarray]):
    """The `DataFiles` part of the EM task: TIFF stacks read, cell probabilities (slices, H,
    W) written as a float32 TIFF stack, slices as pixel items."""

    test_inputs = ("test-volume.tif",)

    def sample_entry(self) -> dict[str, str]:
        from competition.tasks.em import sample_entry

        return {"entry.py": sample_entry.ENTRY, "config.yaml": sample_entry.CONFIG}

    def load_train(self, public: Path) -> EmData:
        return EmData(read_stack(public / "train-volume.tif"),
                      read_stack(public / "train-labels.tif"))

    def load_inputs(self, public: Path, folder: Path | None = None) -> EmData:
        return EmData(read_stack(Path(folder) if folder else public / "test-volume.tif"))

    def write_submission(self, inputs: EmData, predictions: np.ndarray) -> bytes:
        """Cell probabilities (slices, H, W) -> a float32 TIFF stack in [0, 1]."""
        return em_tiff.write_stack(np.clip(np.asarray(predictions, dtype=np.float32), 0, 1))

    def hold_out(self, train: EmData,
                 seed: int = 0) -> tuple[EmData, Validation[EmData] | None]:
        """Training data less its last slice (neighbouring slices are nearly identical: an
        inner slice would leak)."""
        if len(train.volume) < 2 or train.labels is None:
            return train, None
        z = len(train.volume) - 1
        return (EmData(train.volume[:z], train.labels[:z]),
                Validation(f"slice {z}", EmData(train.volume[z:]), train.volume[z],
                           train.labels[z]))

    # Folds are blocks of neighbouring slices, with one slice either side of a held-out
    # block left out of training: neighbours nearly repeat (as `hold_out` notes).
    cv_contiguous = True
    cv_gap = 1

    def cv_items(self, train: EmData) -> list[CvItem]:
        return [CvItem(z, z) for z in train.ids]

    def take(self, data: EmData, positions: Sequence[int]) -> EmData:
        keep = np.asarray(positions, dtype=np.int64)
        return EmData(data.volume[keep], None if data.labels is None else data.labels[keep])

    def inputs_of(self, data: EmData) -> EmData:
        return EmData(data.volume)

    def write_solution(self, data: EmData, folder: Path) -> Path:
        """`solution.tif`: the labels, as `prepare` writes them (no Usage file beside it)."""
        if data.labels is None:
            raise CompetitionError("a solution needs labelled slices")
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "solution.tif"
        path.write_bytes(em_tiff.write_stack(data.labels))
        return path

    def pixel_items(self, data: EmData) -> list[PixelItem]:
        """Each slice as recorded (cells bright, membranes dark); with labels, the cell
        target and the cells as objects (for weight maps)."""
        items = []
        for z, raw in enumerate(data.volume):
            item = PixelItem(str(z), raw.astype(np.float32))
            if data.labels is not None:
                cells = data.labels[z] > 0
                item.targets = cells[..., None].astype(np.float32)
                item.objects = ndimage.label(cells)[0]
            items.append(item)
        return items
