"""What tomography entries train on and predict: volumes (z, y, x), read lazily from zarr."""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from competition.errors import CompetitionError
from competition.tasks.base import CvItem, DataFiles, PixelItem, Validation
from competition.tasks.tomography import prepare, submission, volumes

MAX_PIXEL_ITEM_VOXELS = 256_000_000  # pixel_items holds float32 images and targets


class Volume(Protocol):
    """A (z, y, x) array that slices like numpy's (numpy, zarr, dask or a lazy view): what
    entries predict, a label volume."""

    @property
    def shape(self) -> tuple[int, ...]: ...

    def __getitem__(self, key: Any, /) -> Any: ...


@dataclass
class TomoData:
    """A grey volume and (training data) its labels: zarr arrays, numpy arrays or anything
    that slices like them; `np.asarray(data.volume[z0:z1])` reads a slab."""

    volume: Any  # (z, y, x) grey
    labels: Any | None = None  # (z, y, x) uint8: 0 matrix, 1 fibre, 2 pore

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.volume.shape)  # type: ignore[return-value]

    @property
    def ids(self) -> list[str]:
        """Slices by number: the item ids of maps."""
        return slice_ids(self.shape[0])


def slice_ids(n: int) -> list[str]:
    return [f"{z:04d}" for z in range(n)]


def open_zarr(path: Path) -> Any:
    import zarr

    if not path.exists():
        raise CompetitionError(f"{path}: not found")
    try:
        return zarr.open_array(str(path), mode="r")
    except Exception as e:  # zarr raises several types for a damaged store
        raise CompetitionError(f"{path}: not a readable zarr array ({e})") from None


class _Sliceable:
    """A source volume that slices along z like an array."""

    def __init__(self, volume: volumes.Volume):
        self.volume, self.shape, self.dtype = volume, volume.shape, volume.dtype

    def __getitem__(self, key: Any) -> np.ndarray:
        if isinstance(key, tuple):
            first, rest = key[0], key[1:]
        else:
            first, rest = key, ()
        if isinstance(first, int):
            one: np.ndarray = self.volume.read(first, first + 1)[0][rest]
            return one
        z0, z1, step = first.indices(self.shape[0])
        many: np.ndarray = self.volume.read(z0, z1)[::step][(slice(None), *rest)]
        return many


class _Prefix:
    """The first `n` slices of a lazy volume, still lazy."""

    def __init__(self, array: Any, n: int):
        self.array, self.n = array, n
        self.shape = (n, *array.shape[1:])
        self.dtype = array.dtype

    def __getitem__(self, key: Any) -> Any:
        first, rest = (key[0], key[1:]) if isinstance(key, tuple) else (key, ())
        if isinstance(first, int):
            if not -self.n <= first < self.n:
                raise IndexError(first)
            return self.array[(first % self.n, *rest)]
        z0, z1, step = first.indices(self.n)
        return self.array[(slice(z0, z1, step), *rest)]

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = np.asarray(self.array[: self.n])
        return out if dtype is None else out.astype(dtype)


class _Uint8Labels:
    """A label volume that slices like numpy (numpy, zarr, a lazy view), as dask reads
    arrays: with the `dtype` and `ndim` the lazy views lack, each block as uint8."""

    dtype = np.dtype(np.uint8)
    ndim = 3

    def __init__(self, labels: Any):
        self.labels = labels
        self.shape = tuple(int(s) for s in labels.shape)

    def __getitem__(self, key: Any) -> np.ndarray:
        return np.asarray(self.labels[key]).astype(np.uint8, copy=False)


def labels_from_maps(maps: dict[str, np.ndarray]) -> np.ndarray:
    """Class maps by slice id ((H, W, K) each) -> the (z, y, x) label volume (argmax)."""
    keys = sorted(maps, key=int)
    return np.stack([np.asarray(maps[k]).argmax(axis=-1).astype(np.uint8) for k in keys])


def maps_from_labels(labels: Volume) -> dict[str, np.ndarray]:
    eye = np.eye(submission.N_CLASSES, dtype=np.float32)
    n = int(labels.shape[0])
    return {key: eye[np.asarray(labels[z])] for z, key in enumerate(slice_ids(n))}


def runs(positions: Sequence[int]) -> list[tuple[int, int]]:
    """Positions as half-open ranges of consecutive slices, in their order.

    >>> runs([0, 1, 2, 7, 8])
    [(0, 3), (7, 9)]
    """
    out: list[tuple[int, int]] = []
    for z in map(int, positions):
        if out and z == out[-1][1]:
            out[-1] = (out[-1][0], z + 1)
        else:
            out.append((z, z + 1))
    return out


def read_runs(array: Any, ranges: Sequence[tuple[int, int]]) -> np.ndarray:
    """The slabs of a lazy (z, y, x) array, one read each, end to end."""
    parts = [np.asarray(array[z0:z1]) for z0, z1 in ranges] or [np.asarray(array[0:0])]
    return np.concatenate(parts)


class TomoFiles(DataFiles[TomoData, Volume]):
    """The `DataFiles` part of the tomography task: zarr volumes read lazily, label volumes
    written as a zipped zarr store, slices as pixel items."""

    test_inputs = ("test-volume.zarr",)

    def sample_entry(self) -> dict[str, str]:
        from competition.tasks.tomography import sample_entry

        return {"entry.py": sample_entry.ENTRY, "config.yaml": sample_entry.CONFIG}

    def load_train(self, public: Path) -> TomoData:
        return TomoData(open_zarr(public / "train-volume.zarr"),
                        open_zarr(public / "train-labels.zarr"))

    def load_inputs(self, public: Path, folder: Path | None = None) -> TomoData:
        """The test slab, or any grey volume: a zarr array, or a folder holding one volume
        (raw with its sidecar, HDF5 or zarr)."""
        if folder is None:
            return TomoData(open_zarr(public / "test-volume.zarr"))
        folder = Path(folder)
        if (folder / ".zarray").is_file() or (folder / "zarr.json").is_file():
            return TomoData(open_zarr(folder))
        found = [v for v in volumes.find_volumes(folder) if not volumes.is_label_name(v.name)]
        if len(found) != 1:
            raise CompetitionError(f"{folder}: needs exactly one grey volume; found "
                                   f"{', '.join(v.name for v in found) or 'none'}")
        return TomoData(_Sliceable(found[0]))

    def write_submission(self, inputs: TomoData, predictions: Volume) -> bytes:
        """A (z, y, x) label volume (numpy, zarr or dask) -> a zipped zarr store, chunk by
        chunk."""
        if tuple(predictions.shape) != inputs.shape:
            raise CompetitionError(f"predictions of shape {tuple(predictions.shape)} for "
                                   f"inputs of shape {inputs.shape}")
        buffer = io.BytesIO()
        submission.write_zarr_zip(predictions, buffer)
        return buffer.getvalue()

    def hold_out(self, train: TomoData,
                 seed: int = 0) -> tuple[TomoData, Validation[TomoData] | None]:
        """Training data less a slab at its end (a tenth, 4 to 32 slices): neighbouring
        slices are nearly identical, so an inner slab would leak."""
        n = train.shape[0]
        k = min(max(n // 10, 4), 32)
        if train.labels is None or n < 2 * k:
            return train, None
        held = TomoData(train.volume[n - k:], train.labels[n - k:])
        volume, labels = np.asarray(held.volume), np.asarray(held.labels)
        return (TomoData(_Prefix(train.volume, n - k), _Prefix(train.labels, n - k)),
                Validation(f"slices {n - k}-{n - 1}", TomoData(volume), volume, labels))

    # --- cross-validation: contiguous blocks of slices --------------------------------------
    # Neighbouring slices nearly repeat: folds are blocks along z, and a few slices either
    # side of a held-out block stay out of training.
    cv_contiguous = True
    cv_gap = 2

    def cv_items(self, train: TomoData) -> list[CvItem]:
        """One item per slice, each its own group (contiguity, not groups, keeps folds
        apart)."""
        return [CvItem(key, group=key) for key in train.ids]

    def take(self, data: TomoData, positions: Sequence[int]) -> TomoData:
        """The slices at `positions` (runs of consecutive slices: a held-out block, or the
        training part around one) read slab by slab into numpy arrays."""
        ranges = runs(positions)
        labels = None if data.labels is None else read_runs(data.labels, ranges)
        return TomoData(read_runs(data.volume, ranges), labels)

    def inputs_of(self, data: TomoData) -> TomoData:
        return TomoData(data.volume)

    def write_solution(self, data: TomoData, folder: Path) -> Path:
        """The slices' labels as prepare writes the hidden slab, without a Usage split."""
        import dask.array as da

        if data.labels is None:
            raise CompetitionError("a solution needs the slices' labels")
        truth = da.from_array(_Uint8Labels(data.labels),  # type: ignore[no-untyped-call]
                              chunks=prepare.CHUNKS)
        return prepare.write_hidden_solution(Path(folder), truth, usage=None)

    def pixel_items(self, data: TomoData) -> list[PixelItem]:
        """Each z-slice as a grey image with its one-hot class targets (small volumes only:
        the baselines read the volumes themselves)."""
        if np.prod(data.shape) > MAX_PIXEL_ITEM_VOXELS:
            raise CompetitionError(f"a volume of {np.prod(data.shape):,} voxels is too large "
                                   "for pixel items; read task data's volumes slab by slab")
        volume = np.asarray(data.volume[:])
        labels = None if data.labels is None else np.asarray(data.labels[:])
        items = []
        for z, key in enumerate(data.ids):
            item = PixelItem(key, volume[z].astype(np.float32))
            if labels is not None:
                item.targets = np.eye(submission.N_CLASSES, dtype=np.float32)[labels[z]]
            items.append(item)
        return items
