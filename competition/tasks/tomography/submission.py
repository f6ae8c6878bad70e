"""Label-volume submissions, read slab by slab and never whole, within bounds.

Accepted (each a (z, y, x) integer volume of labels 0 matrix, 1 fibre, 2 pore, of the test
slab's shape):

- a zarr array (format 2 or 3), zipped (the store's files at the zip's root or in one folder)
  or as a folder; compressors Blosc, Zstd, GZip/zlib or none, and a v3 crc32c checksum
  outside it; chunks missing from the store hold the fill value, as zarr defines. The zarr
  library reads it (and verifies its checksums) through `zarr_store.SubmissionStore`;
- an HDF5 file with one 3-D dataset (contiguous or chunked; gzip, lzf or shuffle filters,
  no other: an unknown one would send HDF5 looking for a plugin on the server);
- a raw file with its sidecar (`NAME.raw` + `NAME.raw.info`, zipped or as a folder; see
  `volumes.parse_sidecar`), or a bare raw file of exactly z*y*x bytes (uint8).

Everything is checked against what the metadata declares before a byte of data is decoded:
the shape must be the test slab's, the data type an integer, a chunk at most
`MAX_CHUNK_BYTES` decoded and a row of chunks at most `MAX_ROW_BYTES` (so a declared shape
or chunk that would not fit in memory is refused, not allocated). Each chunk is then read only
if its stored size fits a chunk (a zip member declared at gigabytes is refused before a byte
is read), decoded only if what it declares is exactly a chunk (a stream that claims otherwise
is damaged) and its labels checked. Messages list at most a few names of a listing.
"""

from __future__ import annotations

import json
import math
import re
import stat
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any, Literal

import numpy as np
import zarr

from competition.errors import SourceDataError, SubmissionError
from competition.formats.files import Member, SubmissionFile, reason
from competition.tasks.tomography import volumes
from competition.tasks.tomography.zarr_store import (
    MAX_METADATA_BYTES,
    ChunkRule,
    SubmissionStore,
    codecs_v2,
    codecs_v3,
)

MIB = 1024 * 1024
MAX_CHUNK_BYTES = 64 * MIB  # one chunk, decoded
MAX_ROW_BYTES = 192 * MIB  # one row of chunks along z, as uint8 labels
# Chunks in the grid: each costs a lookup and a call whether stored or not (a grid of 1x1x1
# chunks, all left to the fill value, made a 1 KB file cost seconds per million voxels).
MAX_CHUNKS = 100_000
MAX_METADATA_FILES = 64  # .zarray / zarr.json files: a store of one array has one or a few
HDF5_FILTERS = {1: "gzip", 2: "shuffle", 32000: "lzf"}  # documented; HDF5's and h5py's
HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
N_CLASSES = 3
CLASS_NAMES = "0 (matrix), 1 (fibre) and 2 (pore)"


@dataclass
class Slab:
    """Slices z0..z1 of a submission, as uint8 labels (checked: all below N_CLASSES)."""

    z0: int
    z1: int
    labels: np.ndarray


class LabelVolume:
    """A submission opened and its metadata checked; `slabs()` decodes it in z order."""

    format: str
    shape: tuple[int, int, int]
    dtype: str

    def slabs(self) -> Iterator[Slab]:
        raise NotImplementedError

    def close(self) -> None:
        pass


def open_labels(submission: SubmissionFile, shape: tuple[int, int, int]) -> LabelVolume:
    """The submission as a label volume of `shape`, or a SubmissionError saying why not."""
    kind = submission.kind
    if kind == "file":
        with _open(submission.path) as f:
            head = f.read(8)
        info = submission.path.stat()
        if not stat.S_ISREG(info.st_mode):
            raise SubmissionError("not a regular file")
        from competition.formats.files import check_size

        check_size(info.st_size, submission.limits.max_bytes)
        if head == HDF5_MAGIC:
            return Hdf5Labels(submission.path, shape)
        return RawLabels(submission, None, None, shape)
    members = submission.members()  # the zip's listing, within the limits, before any read
    names = {m.name: m for m in members}
    metadata = [m for m in members if PurePosixPath(m.name).name in (".zarray", "zarr.json")]
    if len(metadata) > MAX_METADATA_FILES:
        raise SubmissionError(f"{len(metadata):,} zarr metadata files (.zarray, zarr.json), "
                              f"such as {some(m.name for m in metadata)}; a store of one array "
                              f"has a few (at most {MAX_METADATA_FILES} are read)")
    if metadata:
        return ZarrLabels(submission, names, metadata, shape)
    raws = [m for m in members if m.name.lower().endswith(".raw")]
    if len(raws) == 1:
        return RawLabels(submission, raws[0], _sidecar_member(raws[0], names), shape)
    if any(m.name.lower().endswith((".h5", ".hdf5")) for m in members):
        raise SubmissionError("submit an HDF5 file as it is, not zipped or in a folder")
    raise SubmissionError(
        "neither a zarr store (.zarray or zarr.json), nor one .raw file with its sidecar; "
        f"found {len(members)} file(s) such as {some(sorted(names))}")


def some(names: Iterable[str], shown: int = 3) -> str:
    """A few of `names` and how many more (a listing may hold thousands)."""
    names = list(names)
    more = f" and {len(names) - shown:,} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def _open(path: Path) -> IO[bytes]:
    try:
        return path.open("rb")
    except OSError as e:
        raise SubmissionError(f"unreadable ({e.strerror or e})") from None


def _check_shape(declared: tuple[int, ...], shape: tuple[int, int, int], where: str) -> None:
    if tuple(declared) != tuple(shape):
        raise SubmissionError(
            f"shape {_xyz(declared)} (x, y, z) differs from the test slab's {_xyz(shape)}",
            where=where)


def _xyz(shape: tuple[int, ...]) -> str:
    return "x".join(str(int(s)) for s in reversed(tuple(shape)))


def _check_dtype(dtype: np.dtype[Any], where: str) -> None:
    if dtype.kind not in "ui" or dtype.itemsize > 8:
        raise SubmissionError(f"data type {dtype} is not an integer type; labels are "
                              f"{CLASS_NAMES} (uint8)", where=where)


def as_labels(block: np.ndarray, where: str) -> np.ndarray:
    """`block` as uint8 labels, or a SubmissionError naming the first unknown label."""
    if block.size == 0:
        return block.astype(np.uint8)
    if block.dtype == np.uint8:
        top = int(block.max())
        if top < N_CLASSES:
            return block
        bad = top
    else:
        low, top = int(block.min()), int(block.max())
        if low >= 0 and top < N_CLASSES:
            return block.astype(np.uint8)
        bad = low if low < 0 else top
    raise SubmissionError(f"holds label {bad}; labels are {CLASS_NAMES}", where=where)


def _check_chunk_count(chunks: tuple[int, ...], shape: tuple[int, int, int],
                       where: str) -> None:
    count = math.prod(-(-size // max(edge, 1))
                      for size, edge in zip(shape, chunks, strict=True))
    if count > MAX_CHUNKS:
        raise SubmissionError(f"chunks of {_xyz(chunks)} make a grid of {count:,} chunks over "
                              f"the test volume; at most {MAX_CHUNKS:,} (use larger chunks, "
                              "e.g. whole slices)", where=where)


def _row_bound(chunk_z: int, shape: tuple[int, int, int], where: str) -> None:
    row = min(chunk_z, shape[0]) * shape[1] * shape[2]
    if row > MAX_ROW_BYTES:
        most = max(MAX_ROW_BYTES // (shape[1] * shape[2]), 1)
        raise SubmissionError(f"chunks of {chunk_z} slices along z are too deep to read a row "
                              f"of them at once; use at most {most}", where=where)


# --- zarr -----------------------------------------------------------------------------------------
#
# zarr reads the array (metadata, chunk keys, codecs, crc32c checksums) through a store whose
# every read is bounded; the harness keeps what it must decide itself: which codecs it runs,
# the shape, data type, chunk and row sizes and fill value, all checked before a chunk is read,
# and each chunk's declared decoded size checked before zarr's codec allocates it.

# zarr decodes a row's chunks concurrently (threads: Blosc and zstd release the GIL); each in
# flight holds its stored bytes, the decoded chunk and a copy. Measured on the 101 M-voxel
# bench slab (2 MB chunks): peak RSS 168 MB with one in flight, 205 MB with 4, 230 MB with 10.
DECODE_BUDGET = 64 * MIB
MAX_IN_FLIGHT = 4


class ZarrLabels(LabelVolume):
    def __init__(self, submission: SubmissionFile, members: dict[str, Member],
                 metadata: list[Member], shape: tuple[int, int, int]):
        arrays = []
        for member in metadata:
            doc = _json_member(submission, member)
            if PurePosixPath(member.name).name == ".zarray" or doc.get("node_type") == "array":
                arrays.append((member, doc))
        if len(arrays) != 1:
            found = some(m.name for m, _ in arrays) or "none"
            raise SubmissionError(f"a zarr store with exactly one array is expected; arrays "
                                  f"found: {found}")
        member, doc = arrays[0]
        self.where = member.name
        parent = PurePosixPath(member.name).parent
        version: Literal[2, 3] = 2 if PurePosixPath(member.name).name == ".zarray" else 3
        self.format = f"zarr v{version}"
        self.codecs = codecs_v2(doc, self.where) if version == 2 else codecs_v3(doc, self.where)
        self.store = SubmissionStore(submission, members,
                                     "" if str(parent) == "." else f"{parent}/")
        self.array = _open_array(self.store, version, self.where)
        self.shape = shape
        _check_shape(self.array.shape, shape, self.where)
        np_dtype = np.dtype(self.array.dtype)
        _check_dtype(np_dtype, self.where)
        self.dtype = str(np_dtype)
        self.chunks = tuple(int(c) for c in self.array.chunks)
        chunk_bytes = math.prod(self.chunks) * np_dtype.itemsize
        if chunk_bytes > MAX_CHUNK_BYTES:
            raise SubmissionError(f"chunks of {chunk_bytes / 1e6:.0f} MB are over the limit of "
                                  f"{MAX_CHUNK_BYTES / 1e6:.0f} MB", where=self.where)
        # zarr spends some 60 us on each chunk of a selection, stored or not
        _check_chunk_count(self.chunks, shape, self.where)
        _row_bound(self.chunks[0], shape, self.where)
        band = min(self.chunks[0], shape[0]) * min(self.chunks[1], shape[1]) * shape[2]
        if band * np_dtype.itemsize > MAX_ROW_BYTES:
            raise SubmissionError(f"chunks of {self.chunks[0]}x{self.chunks[1]} (z, y) "
                                  f"{np_dtype} voxels are too large to read a row of them "
                                  "along x at once; use smaller chunks or uint8", where=self.where)
        fill = self.array.metadata.fill_value
        if fill is not None and not (isinstance(fill, (int, np.integer))
                                     and 0 <= int(fill) < N_CLASSES):
            shown = int(fill) if isinstance(fill, (int, np.integer)) else repr(fill)
            raise SubmissionError(f"fill value {shown} is not a label; labels are "
                                  f"{CLASS_NAMES}", where=self.where)
        self.store.chunks = ChunkRule(self.codecs, chunk_bytes, fill=fill is not None)
        self.in_flight = max(1, min(MAX_IN_FLIGHT, DECODE_BUDGET // (
            self.store.chunks.most + 2 * chunk_bytes)))

    def slabs(self) -> Iterator[Slab]:
        cz, cy, _ = self.chunks
        z_n, y_n, x_n = self.shape
        # Rows read in bands of whole chunks along y, each at most MAX_ROW_BYTES in the
        # array's own data type: one call for a row of uint8 labels.
        band = max(MAX_ROW_BYTES // (min(cz, z_n) * cy * x_n * self.array.dtype.itemsize), 1)
        with zarr.config.set({"async.concurrency": self.in_flight}):
            for z0 in range(0, z_n, cz):
                z1 = min(z0 + cz, z_n)
                row = None if band * cy >= y_n else np.empty((z1 - z0, y_n, x_n), np.uint8)
                for y0 in range(0, y_n, band * cy):
                    y1 = min(y0 + band * cy, y_n)
                    block = self._read(z0, z1, y0, y1)
                    try:
                        labels = as_labels(block, self.where)
                    except SubmissionError:
                        raise self._bad_label(block, z0, y0) from None
                    if row is None:  # the whole row in one read: no copy
                        row = labels
                    else:
                        row[:, y0:y1] = labels
                assert row is not None
                yield Slab(z0, z1, row)

    def _read(self, z0: int, z1: int, y0: int, y1: int) -> np.ndarray:
        try:
            return np.asarray(self.array[z0:z1, y0:y1])
        except (SubmissionError, MemoryError):
            raise
        except Exception:  # a chunk zarr could not decode: found again, one chunk at a time
            pass
        cz, cy, cx = self.chunks
        for iy in range(y0 // cy, math.ceil(y1 / cy)):
            for ix in range(math.ceil(self.shape[2] / cx)):
                index = (z0 // cz, iy, ix)
                try:
                    self.array.get_block_selection(index)
                except (SubmissionError, MemoryError):
                    raise
                except Exception as e:  # codecs raise RuntimeError, ValueError, zlib.error...
                    what = f"{self.codecs.compressor} " if self.codecs.compressor else ""
                    raise SubmissionError(f"damaged {what}chunk ({reason(e)})",
                                          where=self._key(index)) from None
        raise SubmissionError(f"slices {z0}-{z1 - 1} cannot be read", where=self.where)

    def _bad_label(self, block: np.ndarray, z0: int, y0: int) -> SubmissionError:
        """The error naming the chunk that holds the first voxel that is not a label."""
        at = np.argwhere((block < 0) | (block >= N_CLASSES))[0]
        position = (z0 + at[0], y0 + at[1], at[2])
        index = tuple(int(p) // c for p, c in zip(position, self.chunks, strict=True))
        return SubmissionError(f"holds label {block[tuple(at)]}; labels are {CLASS_NAMES}",
                               where=self._key(index))

    def _key(self, index: tuple[int, ...]) -> str:
        return self.store.prefix + self.array.metadata.encode_chunk_key(index)


def _open_array(store: SubmissionStore, version: Literal[2, 3], where: str) -> zarr.Array[Any]:
    try:
        return zarr.open_array(store, mode="r", zarr_format=version)
    except (SubmissionError, MemoryError):
        raise
    except Exception as e:  # zarr raises ValueError, TypeError, KeyError... on bad metadata
        raise SubmissionError(f"not a zarr array zarr can read ({reason(e)})",
                              where=where) from None


def _json_member(submission: SubmissionFile, member: Member) -> dict[str, Any]:
    if member.size > MAX_METADATA_BYTES:
        raise SubmissionError(f"metadata of {member.size} bytes is too large", where=member.name)
    try:
        doc = json.loads(submission.read_member(member, most=MAX_METADATA_BYTES))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise SubmissionError(f"not JSON ({e})", where=member.name) from None
    except RecursionError:  # arrays nested thousands deep: JSON, but no zarr metadata
        raise SubmissionError("JSON nested too deeply", where=member.name) from None
    if not isinstance(doc, dict):
        raise SubmissionError("expected a JSON object", where=member.name)
    return doc


# --- HDF5 -----------------------------------------------------------------------------------------

class Hdf5Labels(LabelVolume):
    format = "HDF5"
    MAX_OBJECTS = 64

    def __init__(self, path: Path, shape: tuple[int, int, int]):
        import h5py

        self.path, self.shape = path, shape
        try:
            self.file = h5py.File(path, "r", locking=False)
        except MemoryError:
            raise
        except Exception as e:  # h5py raises OSError and others on damaged files
            raise SubmissionError(f"not a readable HDF5 file ({_h5_reason(e)})") from None
        try:
            self.dataset = self._dataset()
        except BaseException:
            self.file.close()
            raise

    def _dataset(self) -> Any:
        import h5py

        found: list[str] = []
        seen = [0]

        def visit(name: str, obj: Any) -> None:
            seen[0] += 1
            if seen[0] > self.MAX_OBJECTS:
                raise SubmissionError(f"more than {self.MAX_OBJECTS} objects")
            if isinstance(obj, h5py.Dataset) and obj.ndim == 3:
                found.append(name)

        try:
            self.file.visititems(visit)
        except (SubmissionError, MemoryError):
            raise
        except Exception as e:  # a damaged object tree
            raise SubmissionError(f"damaged HDF5 file ({_h5_reason(e)})") from None
        if len(found) != 1:
            raise SubmissionError(f"needs exactly one 3-D dataset; found {len(found)}"
                                  + (f" ({', '.join(found[:5])})" if found else ""))
        name = found[0]
        dataset = self.file[name]
        if dataset.is_virtual or dataset.external:
            raise SubmissionError("virtual datasets and external storage are not accepted",
                                  where=name)
        _check_shape(dataset.shape, self.shape, name)
        _check_dtype(dataset.dtype, name)
        _check_filters(dataset, name)
        self.dtype = str(dataset.dtype)
        self.step = max(dataset.chunks[0], 1) if dataset.chunks else 32
        if dataset.chunks:
            _check_chunk_count(tuple(dataset.chunks), self.shape, name)
            chunk_bytes = math.prod(dataset.chunks) * dataset.dtype.itemsize
            if chunk_bytes > MAX_CHUNK_BYTES:
                raise SubmissionError(f"chunks of {chunk_bytes / 1e6:.0f} MB are over the limit "
                                      f"of {MAX_CHUNK_BYTES / 1e6:.0f} MB", where=name)
        self.step = min(self.step, max(MAX_ROW_BYTES // (self.shape[1] * self.shape[2]), 1))
        self.where = name
        return dataset

    def slabs(self) -> Iterator[Slab]:
        for z0 in range(0, self.shape[0], self.step):
            z1 = min(z0 + self.step, self.shape[0])
            try:
                block = self.dataset[z0:z1]
            except MemoryError:
                raise
            except Exception as e:  # h5py raises OSError on damaged or truncated data
                raise SubmissionError(f"slices {z0}-{z1 - 1} cannot be read "
                                      f"({_h5_reason(e)})", where=self.where) from None
            yield Slab(z0, z1, as_labels(np.asarray(block), f"{self.where} slices {z0}-{z1 - 1}"))

    def close(self) -> None:
        self.file.close()


def _check_filters(dataset: Any, where: str) -> None:
    """Only the documented filters, checked from the dataset's creation properties before any
    data is read: HDF5 looks for an unknown one among the server's plugins."""
    plist = dataset.id.get_create_plist()
    for i in range(plist.get_nfilters()):
        code = int(plist.get_filter(i)[0])
        if code not in HDF5_FILTERS:
            allowed = ", ".join(f"{name} ({k})" for k, name in HDF5_FILTERS.items())
            raise SubmissionError(f"HDF5 filter {code} is not accepted; the filters accepted "
                                  f"are {allowed}", where=where)


def _h5_reason(e: Exception) -> str:
    """h5py's message without file system paths (the server's, not the participant's)."""
    return re.sub(r"(?<![\w.-])/[^\s()'\",]*", "[path]", str(e))


# --- raw ------------------------------------------------------------------------------------------

def _sidecar_member(raw: Member, names: dict[str, Member]) -> Member:
    stem = raw.name[: -len(".raw")]
    for suffix in volumes.SIDECARS:
        if stem + suffix in names:
            return names[stem + suffix]
    raise SubmissionError(f"no sidecar {PurePosixPath(raw.name).name}.info giving its size, "
                          "data type and byte order", where=raw.name)


class RawLabels(LabelVolume):
    format = "raw"

    def __init__(self, submission: SubmissionFile, raw: Member | None, sidecar: Member | None,
                 shape: tuple[int, int, int]):
        self.submission, self.raw, self.shape = submission, raw, shape
        if raw is None:  # a bare file: its size says it all
            size = submission.path.stat().st_size
            if size != math.prod(shape):
                raise SubmissionError(
                    f"not a zip, zarr store or HDF5 file; as raw uint8 labels without a "
                    f"sidecar it would need {math.prod(shape):,} bytes ({_xyz(shape)}), it has "
                    f"{size:,}")
            self.layout = volumes.RawLayout(shape, np.dtype(np.uint8))
            self.where = submission.name
        else:
            assert sidecar is not None
            if sidecar.size > MAX_METADATA_BYTES:
                raise SubmissionError("sidecar too large", where=sidecar.name)
            text = submission.read_member(sidecar, most=MAX_METADATA_BYTES).decode(
                "utf-8", "replace")
            try:
                self.layout = volumes.parse_sidecar(text, sidecar.name)
            except SourceDataError as e:
                raise SubmissionError(str(e)) from None
            self.where = raw.name
            _check_shape(self.layout.shape, shape, sidecar.name)
            _check_dtype(self.layout.dtype, sidecar.name)
            if raw.size != self.layout.nbytes:
                raise SubmissionError(f"{raw.size:,} bytes where its sidecar describes "
                                      f"{self.layout.nbytes:,} (truncated or mis-described)",
                                      where=raw.name)
        self.dtype = str(self.layout.dtype)
        plane = shape[1] * shape[2] * self.layout.dtype.itemsize
        self.step = max(min(MAX_ROW_BYTES, 32 * MIB) // plane, 1)

    def slabs(self) -> Iterator[Slab]:
        dtype, (z_n, y_n, x_n) = self.layout.dtype, self.shape
        stream = self.submission.path.open("rb") if self.raw is None else \
            self.submission.open_member(self.raw)
        with stream:
            _skip(stream, self.layout.header, self.where)
            for z0 in range(0, z_n, self.step):
                z1 = min(z0 + self.step, z_n)
                block = np.empty((z1 - z0, y_n, x_n), dtype)
                view = memoryview(block).cast("B")  # type: ignore[arg-type]
                got = 0
                while got < len(view):
                    n = stream.readinto(view[got:])  # type: ignore[attr-defined]
                    if not n:
                        ended = z0 + got // (y_n * x_n * dtype.itemsize)
                        raise SubmissionError(f"ends in slice {ended} (truncated)",
                                              where=self.where)
                    got += n
                yield Slab(z0, z1, as_labels(block, f"{self.where} slices {z0}-{z1 - 1}"))


def _skip(stream: IO[bytes], n: int, where: str) -> None:
    while n > 0:
        chunk = stream.read(min(n, MIB))
        if not chunk:
            raise SubmissionError("ends inside its header", where=where)
        n -= len(chunk)


# --- writing --------------------------------------------------------------------------------------

ZIP_DATE = (1980, 1, 1, 0, 0, 0)
WRITE_CHUNKS = (32, 256, 256)


def _zip_info(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, ZIP_DATE)
    info.compress_type = zipfile.ZIP_STORED  # chunks are compressed already
    info.create_system = 3
    info.external_attr = 0o644 << 16
    return info


def write_zarr_zip(labels: Any, out: IO[bytes], chunks: tuple[int, int, int] = WRITE_CHUNKS
                   ) -> None:
    """A (z, y, x) label array (numpy, zarr or dask: anything sliceable) as a zipped zarr v2
    store (uint8, Blosc-LZ4), written chunk by chunk, the same bytes for the same labels."""
    import numcodecs

    shape = tuple(int(s) for s in labels.shape)
    chunks = tuple(min(c, s) for c, s in zip(chunks, shape, strict=True))  # type: ignore[assignment]
    codec = numcodecs.Blosc(cname="lz4", clevel=5, shuffle=numcodecs.Blosc.NOSHUFFLE)
    meta = {"zarr_format": 2, "shape": list(shape), "chunks": list(chunks), "dtype": "|u1",
            "compressor": codec.get_config(), "fill_value": 0, "order": "C", "filters": None,
            "dimension_separator": "."}
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
        archive.writestr(_zip_info(".zarray"), json.dumps(meta, indent=1, sort_keys=True))
        for iz in range(math.ceil(shape[0] / chunks[0])):
            z0, z1 = iz * chunks[0], min((iz + 1) * chunks[0], shape[0])
            row = np.asarray(labels[z0:z1]).astype(np.uint8, copy=False)
            for iy in range(math.ceil(shape[1] / chunks[1])):
                for ix in range(math.ceil(shape[2] / chunks[2])):
                    block = np.zeros(chunks, np.uint8)  # edge chunks are stored whole
                    part = row[:, iy * chunks[1]:(iy + 1) * chunks[1],
                               ix * chunks[2]:(ix + 1) * chunks[2]]
                    block[: part.shape[0], : part.shape[1], : part.shape[2]] = part
                    archive.writestr(_zip_info(f"{iz}.{iy}.{ix}"), codec.encode(block))
