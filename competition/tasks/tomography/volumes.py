"""Volumes of a tomography source, read lazily: raw files with a sidecar, HDF5 datasets and
zarr arrays (trusted data of the organizer; submissions are read by `submission.py`).

A raw volume is described by a small text sidecar beside it (`NAME.raw.info`, as the public
GF-PA66 release has; `NAME.info` and `NAME.raw.json` are read too): one `key = value` (or
`key: value`) per line, keys case-insensitive, `#` starts a comment:

    size = 1300 1040 1900        # x y z: columns, rows, slices (also 1300x1040x1900);
                                 # or width/height/depth, size_x/size_y/size_z, nx/ny/nz
    dtype = uint8                # also "unsigned 8 bit", "16-bit", "unsigned short", float32
    byte order = little          # little (default) or big; also "endianness", intel/motorola
    header = 0                   # bytes to skip at the start (optional; also "offset")

The file holds x fastest, then y, then z (C order of a (z, y, x) array), and its size must be
exactly header + x*y*z*itemsize bytes. Arrays are (z, y, x) everywhere in this task.
"""

from __future__ import annotations

import json
import math
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from competition.errors import SourceDataError

LABEL_WORDS = ("label", "segment", "mask", "truth", "gt", "annotation", "seg")
SIDECARS = (".raw.info", ".info", ".raw.json")
COMPRESSOR = {"id": "blosc", "cname": "lz4", "clevel": 5, "shuffle": 0, "blocksize": 0}


# --- sidecars ------------------------------------------------------------------------------

@dataclass(frozen=True)
class RawLayout:
    shape: tuple[int, int, int]  # (z, y, x)
    dtype: np.dtype[Any]
    header: int = 0

    @property
    def nbytes(self) -> int:
        return self.header + math.prod(self.shape) * self.dtype.itemsize

    def as_sidecar(self) -> str:
        z, y, x = self.shape
        order = "big" if self.dtype.byteorder == ">" else "little"
        return (f"size = {x} {y} {z}\ndtype = {self.dtype.newbyteorder('=').name}\n"
                f"byte order = {order}\nheader = {self.header}\n")


_KEYS = {
    "size": "size", "shape": "size", "dimensions": "size", "dimension": "size", "dims": "size",
    "dim": "size", "resolution": "size",
    "width": "x", "sizex": "x", "dimx": "x", "nx": "x", "x": "x", "columns": "x",
    "height": "y", "sizey": "y", "dimy": "y", "ny": "y", "y": "y", "rows": "y",
    "depth": "z", "sizez": "z", "dimz": "z", "nz": "z", "z": "z", "slices": "z",
    "dtype": "dtype", "datatype": "dtype", "type": "dtype", "format": "dtype",
    "voxeltype": "dtype", "pixeltype": "dtype", "bits": "dtype", "bitdepth": "dtype",
    "byteorder": "order", "endianness": "order", "endian": "order", "littleendian": "little",
    "bigendian": "big", "header": "header", "headersize": "header", "offset": "header",
    "headerbytes": "header", "skip": "header",
}


def parse_sidecar(text: str, where: str) -> RawLayout:
    """A raw volume's layout from its sidecar (see the module's docstring), or a
    SourceDataError naming the file and the line."""
    if text.lstrip().startswith("{"):
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as e:
            raise SourceDataError(f"{where}: not JSON ({e})") from None
        if not isinstance(doc, dict):
            raise SourceDataError(f"{where}: expected a JSON object")
        lines = [(k, " ".join(map(str, v)) if isinstance(v, list) else str(v))
                 for k, v in doc.items()]
    else:
        lines = []
        for raw_line in text.splitlines():
            line = re.split(r"[#;]", raw_line, maxsplit=1)[0].strip()
            match = re.match(r"([^=:]+?)\s*[=:]\s*(.*)$", line)
            if match:
                lines.append((match.group(1), match.group(2)))
            elif line:  # "size 1300 1040 1900"
                key, _, value = line.partition(" ")
                lines.append((key, value))
    found: dict[str, str] = {}
    for key, value in lines:
        name = _KEYS.get(re.sub(r"[\s_\-.]", "", key.lower()))
        if name is not None and value.strip():
            found[name] = value.strip()
    if "size" in found:
        numbers = re.findall(r"\d+", found["size"])
        if len(numbers) != 3:
            raise SourceDataError(f"{where}: size {found['size']!r} needs three numbers "
                                  "(x y z)")
        x, y, z = (int(n) for n in numbers)
    elif {"x", "y", "z"} <= set(found):
        try:
            x, y, z = (int(found[k]) for k in "xyz")
        except ValueError:
            raise SourceDataError(f"{where}: width, height and depth must be whole numbers") \
                from None
    else:
        raise SourceDataError(f"{where}: no size (give `size = X Y Z`, or width/height/depth)")
    if min(x, y, z) < 1:
        raise SourceDataError(f"{where}: size {x} {y} {z} must be positive")
    dtype = parse_dtype(found.get("dtype", "uint8"), where)
    big = _big_endian(found, where)
    if dtype.itemsize > 1:
        dtype = dtype.newbyteorder(">" if big else "<")
    try:
        header = int(found.get("header", "0"))
    except ValueError:
        raise SourceDataError(f"{where}: header {found['header']!r} is not a number") from None
    return RawLayout((z, y, x), dtype, max(header, 0))


def parse_dtype(text: str, where: str) -> np.dtype[Any]:
    t = text.lower().strip()
    try:
        direct = np.dtype(t)
        if direct.kind in "uif" and direct.itemsize <= 8:
            return direct
    except (TypeError, ValueError):  # not a numpy name: read the words
        pass
    bits_found = re.findall(r"\d+", t)
    if "char" in t or "byte" in t:
        bits = 8
    elif "short" in t:
        bits = 16
    elif "long" in t:
        bits = 64
    elif "int" in t and not bits_found:
        bits = 32
    elif bits_found:
        bits = int(bits_found[0])
    else:
        raise SourceDataError(f"{where}: data type {text!r} not understood (e.g. uint8)")
    if "float" in t or "real" in t or "double" in t:
        kind = "f"
        bits = 64 if "double" in t else bits
    elif "unsigned" in t or t.startswith("u") or "signed" not in t:
        kind = "u"
    else:
        kind = "i"
    try:
        return np.dtype(f"{kind}{bits // 8}")
    except (TypeError, ValueError):
        raise SourceDataError(f"{where}: data type {text!r} not understood") from None


def _big_endian(found: dict[str, str], where: str) -> bool:
    if "order" in found:
        value = found["order"].lower()
        if any(w in value for w in ("big", "motorola", "msb", ">")):
            return True
        if any(w in value for w in ("little", "intel", "lsb", "<", "native")):
            return False
        raise SourceDataError(f"{where}: byte order {found['order']!r}: little or big")
    if "little" in found:
        return found["little"].lower() in ("false", "0", "no")
    if "big" in found:
        return found["big"].lower() in ("true", "1", "yes")
    return False


# --- lazy volumes --------------------------------------------------------------------------

class Volume:
    """A (z, y, x) volume read slab by slab."""

    name: str
    shape: tuple[int, int, int]
    dtype: np.dtype[Any]
    chunk_z: int = 64  # slices read at once

    def read(self, z0: int, z1: int) -> np.ndarray:
        raise NotImplementedError

    def slabs(self, step: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
        step = step or self.chunk_z
        for z0 in range(0, self.shape[0], step):
            yield z0, self.read(z0, min(z0 + step, self.shape[0]))

    def to_dask(self, chunks: tuple[int, int, int] | None = None) -> Any:
        """The volume as a dask array, each block read when it is computed."""
        import dask.array as da

        step = chunks[0] if chunks else self.chunk_z
        blocks = []
        for z0 in range(0, self.shape[0], step):
            z1 = min(z0 + step, self.shape[0])
            blocks.append(da.from_delayed(  # type: ignore[no-untyped-call]
                _delayed_read(self, z0, z1), (z1 - z0, *self.shape[1:]), self.dtype))
        array = da.concatenate(blocks, axis=0)  # type: ignore[no-untyped-call]
        return array.rechunk(chunks) if chunks else array


def _delayed_read(volume: Volume, z0: int, z1: int) -> Any:
    from dask.delayed import delayed

    return delayed(volume.read, pure=True)(z0, z1)


class RawVolume(Volume):
    """Slabs read with seek + read (never a memory map: its pages would count as the
    process's memory)."""

    def __init__(self, path: Path, layout: RawLayout):
        self.path, self.layout = path, layout
        self.name, self.shape, self.dtype = path.name, layout.shape, layout.dtype
        size = path.stat().st_size
        if size != layout.nbytes:
            raise SourceDataError(
                f"{path}: {size:,} bytes, but its sidecar describes {layout.nbytes:,} "
                f"(header {layout.header} + {'x'.join(map(str, layout.shape[::-1]))} voxels of "
                f"{layout.dtype.itemsize} byte(s))")

    def read(self, z0: int, z1: int) -> np.ndarray:
        plane = self.shape[1] * self.shape[2] * self.dtype.itemsize
        out = np.empty((z1 - z0, *self.shape[1:]), self.dtype)
        with self.path.open("rb") as f:
            f.seek(self.layout.header + z0 * plane)
            if f.readinto(memoryview(out).cast("B")) != out.nbytes:  # type: ignore[arg-type]
                raise SourceDataError(f"{self.path}: ends early")
        return out.astype(self.dtype.newbyteorder("="), copy=False)


class Hdf5Volume(Volume):
    _lock = threading.Lock()  # the HDF5 library is not thread-safe

    def __init__(self, path: Path, dataset: str):
        import h5py

        self.path, self.dataset = path, dataset
        with h5py.File(path, "r") as f:
            d = f[dataset]
            self.shape, self.dtype = tuple(d.shape), d.dtype
            if d.chunks:
                self.chunk_z = max(d.chunks[0], 1)
        self.name = f"{path.name}:{dataset}"

    def read(self, z0: int, z1: int) -> np.ndarray:
        import h5py

        with self._lock, h5py.File(self.path, "r") as f:
            data: np.ndarray = f[self.dataset][z0:z1]
        return data.astype(data.dtype.newbyteorder("="), copy=False)


class ZarrVolume(Volume):
    def __init__(self, path: Path, component: str | None = None):
        import zarr

        self.path = path
        try:
            self.array = zarr.open_array(str(path), mode="r", path=component or "")
        except Exception as e:  # zarr raises several types for a damaged store
            raise SourceDataError(f"{path}: not a readable zarr array ({e})") from None
        self.shape, self.dtype = tuple(self.array.shape), self.array.dtype  # type: ignore[assignment]
        self.chunk_z = max(int(self.array.chunks[0]), 1)
        self.name = path.name + (f":{component}" if component else "")

    def read(self, z0: int, z1: int) -> np.ndarray:
        data: np.ndarray = np.asarray(self.array[z0:z1])
        return data

    def to_dask(self, chunks: tuple[int, int, int] | None = None) -> Any:
        import dask.array as da

        array = da.from_array(self.array, chunks=self.array.chunks,  # type: ignore[no-untyped-call]
                              lock=False)
        return array.rechunk(chunks) if chunks else array


# --- a source folder ---------------------------------------------------------------------------

def is_label_name(name: str) -> bool:
    words = re.split(r"[^a-z]+", name.lower())
    return any(w.startswith(LABEL_WORDS) for w in words if w)


def find_volumes(source: Path) -> list[Volume]:
    """Every 3-D volume in a source folder: raw files with a sidecar, HDF5 datasets, zarr
    arrays (a `.zarr` folder, or a folder holding `.zarray` or `zarr.json`)."""
    found: list[Volume] = []
    for path in sorted(source.iterdir()):
        name = path.name.lower()
        if path.is_file() and name.endswith(".raw"):
            found.append(RawVolume(path, _sidecar_of(path)))
        elif path.is_file() and name.endswith((".h5", ".hdf5", ".hdf")):
            found.extend(_hdf5_volumes(path))
        elif path.is_dir() and (name.endswith(".zarr") or (path / ".zarray").is_file()
                                or (path / "zarr.json").is_file()):
            found.extend(_zarr_volumes(path))
    return [v for v in found if len(v.shape) == 3]


def _sidecar_of(path: Path) -> RawLayout:
    for suffix in SIDECARS:
        sidecar = path.with_name(path.name[: -len(".raw")] + suffix)
        if sidecar.is_file():
            return parse_sidecar(sidecar.read_text(errors="replace"), str(sidecar))
    raise SourceDataError(f"{path}: no sidecar ({path.name}.info) giving its size, data type "
                          "and byte order")


def _hdf5_volumes(path: Path) -> list[Volume]:
    import h5py

    names: list[str] = []
    try:
        with h5py.File(path, "r") as f:
            f.visititems(lambda n, obj: names.append(n) if isinstance(obj, h5py.Dataset)
                         and obj.ndim == 3 else None)
    except OSError as e:
        raise SourceDataError(f"{path}: not a readable HDF5 file ({e})") from None
    return [Hdf5Volume(path, n) for n in names]


def _zarr_volumes(path: Path) -> list[Volume]:
    import zarr

    try:
        node = zarr.open(str(path), mode="r")
    except Exception as e:  # zarr raises several types for a damaged store
        raise SourceDataError(f"{path}: not a readable zarr store ({e})") from None
    if isinstance(node, zarr.Array):
        return [ZarrVolume(path)]
    return [ZarrVolume(path, name) for name, _ in sorted(node.arrays())]


def image_and_labels(source: Path) -> tuple[Volume, Volume]:
    """The source's grey volume and its label volume, told apart by name (labels, mask,
    segmentation, gt...)."""
    volumes = find_volumes(source)
    labels = [v for v in volumes if is_label_name(v.name)]
    images = [v for v in volumes if not is_label_name(v.name)]
    listing = ", ".join(v.name for v in volumes) or "none"
    if len(labels) != 1 or len(images) != 1:
        raise SourceDataError(
            f"{source}: needs one grey volume and one label volume (its name says labels, "
            f"mask or segmentation), each a raw file with a sidecar, an HDF5 dataset or a zarr "
            f"array; found 3-D volumes: {listing}")
    return images[0], labels[0]


# --- writing -------------------------------------------------------------------------------------

def create_zarr(path: Path, shape: tuple[int, ...], chunks: tuple[int, ...],
                dtype: str = "uint8") -> Any:
    """An empty zarr (format 2, readable by zarr 2 and 3) array, Blosc-LZ4 compressed: fast to
    decode, which keeps scoring close to the speed of counting."""
    import numcodecs
    import zarr

    return zarr.create_array(
        store=str(path), shape=shape, chunks=tuple(min(c, s) for c, s in
                                                   zip(chunks, shape, strict=True)),
        dtype=dtype, zarr_format=2, fill_value=0, overwrite=True,
        compressors=numcodecs.Blosc(cname="lz4", clevel=5, shuffle=numcodecs.Blosc.NOSHUFFLE))
