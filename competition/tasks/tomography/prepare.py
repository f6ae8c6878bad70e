"""A labelled tomography volume -> a segmentation competition with a hidden test slab.

The source folder holds a grey volume and its label volume (raw files with sidecars, HDF5
datasets or zarr arrays; see `volumes`), labels 0 matrix, 1 fibre, 2 pore, or other values
named by a `classes.json` beside them (`{"matrix": 0, "fibre": 255, "pore": 128}`). A
contiguous slab of z-slices (300 by default, as GF-PA66's test slab; a quarter of a smaller
volume) at a seeded end of the volume becomes the hidden test set: neighbouring slices are
nearly identical, so interleaving them with training slices would leak the answer. The slab's
slices are split into a public and a private part along z (the public share of the slices,
at a seeded end of the slab). Everything is copied chunk by chunk (dask), so a volume of
billions of voxels is prepared in bounded memory.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from competition.errors import SourceDataError
from competition.tasks.preparing import Staging, competition_yaml, readme_rules
from competition.tasks.tomography import submission, volumes
from competition.tasks.tomography.synthetic import CLASSES

TASK_NAME = "tomography"
DEFAULT_TEST_SLICES = 300
CHUNKS = (32, 256, 256)  # of every prepared volume (a row of chunks is 2 MB per 256x256)
SOLUTION_STORE = "solution.zarr"
MIB = 1024 * 1024
DEFAULT_MAX_SUBMISSION_MB = 512  # the task's own upload limit (TomographyTask.limits)


def test_slices(n: int, test_fraction: float | None, test_slices: int | None) -> int:
    if test_slices is not None:
        count = test_slices
    elif test_fraction is not None:
        count = int(round(n * test_fraction))
    else:
        count = min(DEFAULT_TEST_SLICES, n // 4)
    if count < 2 or n - count < 2:
        raise SourceDataError(f"a volume of {n} slices cannot give a test slab of {count} "
                              "slices and a training volume (each needs at least 2)")
    return count


def class_table(source: Path) -> np.ndarray:
    """A lookup table from the source's label values to 0 matrix, 1 fibre, 2 pore (255: a
    value no class has)."""
    table = np.full(65536, 255, np.uint8)
    path = source / "classes.json"
    if not path.is_file():
        table[: len(CLASSES)] = np.arange(len(CLASSES))
        return table
    try:
        doc = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise SourceDataError(f"{path}: not JSON ({e})") from None
    if not isinstance(doc, dict) or set(doc) != set(CLASSES) or \
            not all(isinstance(v, int) and 0 <= v < 65536 for v in doc.values()) or \
            len(set(doc.values())) != len(CLASSES):
        raise SourceDataError(f"{path}: needs one distinct label value (0..65535) for each of "
                              f"{', '.join(CLASSES)}")
    for k, name in enumerate(CLASSES):
        table[doc[name]] = k
    return table


def _mapped(block: np.ndarray, table: np.ndarray, block_info: Any = None) -> np.ndarray:
    if block.dtype.kind not in "ui" or (block.size and (block.min() < 0 or block.max() > 65535)):
        raise SourceDataError("labels must be integers 0..65535")
    out: np.ndarray = table[block.astype(np.int64, copy=False)] if block.size else \
        block.astype(np.uint8)
    if (out == 255).any():
        z0 = block_info[0]["array-location"][0][0] if block_info else 0
        values = np.unique(block[out == 255])[:5].tolist()
        raise SourceDataError(f"label value(s) {values} near slice {z0} belong to no class "
                              f"(name the classes' values in classes.json)")
    return out


def prepare(source: Path, stage: Staging, seed: int, public_fraction: float, *,
            name: str = TASK_NAME, kind: str = TASK_NAME, test_fraction: float | None = None,
            n_test_slices: int | None = None) -> None:
    image, labels = volumes.image_and_labels(source)
    if image.shape != labels.shape:
        raise SourceDataError(f"{source}: the grey volume {image.name} is "
                              f"{_xyz(image.shape)} and the labels {labels.name} "
                              f"{_xyz(labels.shape)} (x, y, z): they must match")
    if image.dtype.kind not in "uif":
        raise SourceDataError(f"{image.name}: data type {image.dtype} is not a grey volume")
    n, height, width = image.shape
    n_test = test_slices(n, test_fraction, n_test_slices)
    rng = np.random.default_rng(seed)
    first = n - n_test if rng.integers(2) else 0
    test = slice(first, first + n_test)
    train = slice(0, first) if first else slice(n_test, n)
    n_public = min(max(int(round(n_test * public_fraction)), 1), n_test - 1)
    public_first = bool(rng.integers(2))
    public = (0, n_public) if public_first else (n_test - n_public, n_test)

    grey = image.to_dask()
    truth = labels.to_dask().map_blocks(_mapped, table=class_table(source), dtype=np.uint8)
    store_volumes(stage.root, {"public/train-volume.zarr": grey[train],
                               "public/train-labels.zarr": truth[train],
                               "public/test-volume.zarr": grey[test]})
    usage = {"Public": list(public),
             "Private": [public[1], n_test] if public_first else [0, public[0]]}
    write_hidden_solution(stage.root / "private", truth[test], usage, source={
        "volume": image.name, "labels": labels.name, "slices": [first, first + n_test]})

    buffer = io.BytesIO()
    submission.write_zarr_zip(_Zeros((n_test, height, width)), buffer)
    stage.write("public/sample_submission.zip", buffer.getvalue())
    counts = {"train": train.stop - train.start, "test": n_test, "public": n_public,
              "height": height, "width": width}
    limit = upload_limit_mb((n_test, height, width))
    stage.write("public/README.md", readme(name, counts, str(image.dtype), limit).encode())
    stage.write("competition.yaml", competition_yaml(
        name=name, kind=kind, task=TASK_NAME, title="Three-phase tomography segmentation",
        seed=seed, public_fraction=public_fraction, counts=counts,
        files={"solution": "private/solution.json"}, max_submission_mb=limit))


def store_volumes(root: Path, arrays: Mapping[str, Any]) -> None:
    """Dask arrays into zarr stores under `root` (by relative path), chunk by chunk in one
    pass: a volume of billions of voxels in bounded memory."""
    import dask
    import dask.array as da

    sources, stores = [], []
    for rel, array in arrays.items():
        store = volumes.create_zarr(root / rel, array.shape, CHUNKS, str(array.dtype))
        sources.append(array.rechunk(store.chunks))
        stores.append(store)
    with dask.config.set(scheduler="threads"):
        da.store(sources, stores, lock=False)


def write_hidden_solution(folder: Path, truth: Any, usage: Mapping[str, list[int]] | None,
                          source: Mapping[str, Any] | None = None) -> Path:
    """`solution.zarr` (the slab's labels, a (z, y, x) uint8 dask array) and `solution.json`
    (its shape, classes and usage as slice ranges; none: no Usage split, as cross-validation
    writes it) in `folder`: what `TomographyTask.load_solution` reads. Returns the JSON's
    path."""
    folder.mkdir(parents=True, exist_ok=True)
    store_volumes(folder, {SOLUTION_STORE: truth})
    doc: dict[str, Any] = {"labels": SOLUTION_STORE, "shape": [int(n) for n in truth.shape],
                           "classes": list(CLASSES), "usage": dict(usage or {})}
    if source is not None:
        doc["source"] = dict(source)
    path = folder / "solution.json"
    path.write_text(json.dumps(doc, indent=1) + "\n")
    return path


def upload_limit_mb(shape: tuple[int, int, int]) -> int:
    """The upload limit (MiB) a test slab's submissions need: the task's default, or room for
    the slab as raw uint8 labels with a quarter to spare (HDF5 or zip overheads)."""
    return max(DEFAULT_MAX_SUBMISSION_MB, int(math.ceil(1.25 * math.prod(shape) / MIB)) + 1)


class _Zeros:
    """An all-matrix label volume, made a slab at a time."""

    def __init__(self, shape: tuple[int, int, int]):
        self.shape = shape

    def __getitem__(self, key: slice) -> np.ndarray:
        z0, z1, _ = key.indices(self.shape[0])
        return np.zeros((z1 - z0, *self.shape[1:]), np.uint8)


def _xyz(shape: tuple[int, ...]) -> str:
    return "x".join(map(str, reversed(shape)))


def readme(name: str, counts: dict[str, int], dtype: str, limit_mb: int) -> str:
    """The README a participant finds in `public/`."""
    w, h = counts["width"], counts["height"]
    return f"""# {name}: three-phase tomography segmentation

Segment an X-ray tomography volume of a glass-fibre reinforced polymer into its three
phases: **0 matrix** (the polymer), **1 fibre** (glass), **2 pore** (voids). Every voxel gets
one label.

## Files
Volumes are zarr arrays (format 2, Blosc-LZ4), indexed (z, y, x): slices, rows, columns.
Read them with `zarr.open_array("train-volume.zarr", mode="r")` (or dask's `from_zarr`); a
slice is `volume[z]`.
- `train-volume.zarr`: {counts['train']} training slices of {w}x{h} ({dtype}).
- `train-labels.zarr`: their labels (uint8: 0 matrix, 1 fibre, 2 pore).
- `test-volume.zarr`: the test slab, {counts['test']} contiguous slices, labels hidden. It lies
  at one end of the volume the training slices were cut from.
- `sample_submission.zip`: a valid (all matrix) submission.

## Submission format
A label volume of the test slab's shape, x*y*z = {w}x{h}x{counts['test']} (a zarr array of
shape [{counts['test']}, {h}, {w}]), integer labels 0, 1, 2 (uint8 preferred), as one of:
- a **zarr** array (format 2 or 3) in a zip (the store's files at the zip's root, as zarr's
  `ZipStore` writes them, or in one folder), or a zarr directory: `competition submit` zips
  a folder itself; for the portal, `python -m competition.tasks.tomography.tools zip DIR
  OUT.zip` makes the same zip; compressors Blosc, Zstd, GZip or none; no sharding;
- an **HDF5** file with exactly one 3-D dataset, uncompressed or with the gzip, lzf and
  shuffle filters only;
- **raw** bytes with a sidecar: `NAME.raw` and `NAME.raw.info` (`size = {w} {h} {counts['test']}`,
  `dtype = uint8`, `byte order = little`) zipped together, or a bare `.raw` file of exactly
  {counts['test'] * h * w:,} bytes (uint8).

Uploads up to {limit_mb} MB are accepted. Shape, data type and chunk sizes are checked from
the metadata before anything is decoded, then every chunk's labels.

## Metric
Class-wise Jaccard (intersection over union) of matrix, fibre and pore, from the confusion
matrix summed over the scored slices, and their **mean** (the score; higher is better). A
class absent from both truth and prediction is left out of the mean.

{readme_rules(counts, "slices")}"""
