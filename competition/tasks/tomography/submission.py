"""Label-volume submissions, read slab by slab and never whole, within bounds.

Accepted (each a (z, y, x) integer volume of labels 0 matrix, 1 fibre, 2 pore, of the test
slab's shape):

- a zarr array (format 2 or 3), zipped (the store's files at the zip's root or in one folder)
  or as a folder; compressors Blosc, Zstd, GZip/zlib or none; chunks missing from the store
  hold the fill value, as zarr defines;
- an HDF5 file with one 3-D dataset (contiguous or chunked; gzip, lzf or shuffle filters,
  no other: an unknown one would send HDF5 looking for a plugin on the server);
- a raw file with its sidecar (`NAME.raw` + `NAME.raw.info`, zipped or as a folder; see
  `volumes.parse_sidecar`), or a bare raw file of exactly z*y*x bytes (uint8).

Everything is checked against what the metadata declares before a byte of data is decoded:
the shape must be the test slab's, the data type an integer, a chunk at most
`MAX_CHUNK_BYTES` decoded and a row of chunks at most `MAX_ROW_BYTES` (so a declared shape
or chunk that would not fit in memory is refused, not allocated). Each chunk is then read only
if its stored size fits a chunk (a zip member declared at gigabytes is refused before a byte
is read), decoded into a buffer of exactly its declared size (a stream that claims otherwise
is damaged) and its labels checked. Messages list at most a few names of a listing.
"""

from __future__ import annotations

import json
import math
import re
import stat
import struct
import zipfile
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any

import numpy as np

from competition.errors import SourceDataError, SubmissionError
from competition.formats.files import Member, SubmissionFile
from competition.tasks.tomography import volumes

MIB = 1024 * 1024
MAX_CHUNK_BYTES = 64 * MIB  # one chunk, decoded
MAX_ROW_BYTES = 192 * MIB  # one row of chunks along z, as uint8 labels
# Chunks in the grid: each costs a lookup and a call whether stored or not (a grid of 1x1x1
# chunks, all left to the fill value, made a 1 KB file cost seconds per million voxels).
MAX_CHUNKS = 100_000
MAX_METADATA_BYTES = 64 * 1024
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

class ZarrLabels(LabelVolume):
    def __init__(self, submission: SubmissionFile, members: dict[str, Member],
                 metadata: list[Member], shape: tuple[int, int, int]):
        self.submission, self.members, self.expected = submission, members, shape
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
        self.prefix = "" if str(parent) == "." else f"{parent}/"
        if PurePosixPath(member.name).name == ".zarray":
            self._v2(doc)
        else:
            self._v3(doc)
        self.shape = shape
        _check_shape(self.declared_shape, shape, self.where)
        _check_dtype(self.np_dtype, self.where)
        self.dtype = str(self.np_dtype)
        if len(self.chunks) != 3 or min(self.chunks) < 1:
            raise SubmissionError(f"chunks {self.chunks} must be three positive sizes",
                                  where=self.where)
        chunk_bytes = math.prod(self.chunks) * self.np_dtype.itemsize
        if chunk_bytes > MAX_CHUNK_BYTES:
            raise SubmissionError(f"chunks of {chunk_bytes / 1e6:.0f} MB are over the limit of "
                                  f"{MAX_CHUNK_BYTES / 1e6:.0f} MB", where=self.where)
        _row_bound(self.chunks[0], shape, self.where)
        if self.fill is not None and not 0 <= self.fill < N_CLASSES:
            raise SubmissionError(f"fill value {self.fill} is not a label; labels are "
                                  f"{CLASS_NAMES}", where=self.where)

    def _v2(self, doc: dict[str, Any]) -> None:
        self.format = "zarr v2"
        if doc.get("zarr_format") != 2:
            raise SubmissionError("zarr_format must be 2 in .zarray", where=self.where)
        self.declared_shape = _ints(doc.get("shape"), "shape", self.where)
        self.chunks = _ints(doc.get("chunks"), "chunks", self.where)
        self.np_dtype = _dtype(doc.get("dtype"), self.where)
        self.order = doc.get("order", "C")
        if self.order not in ("C", "F"):
            raise SubmissionError(f"order {self.order!r} must be C or F", where=self.where)
        if doc.get("filters"):
            raise SubmissionError("zarr filters are not accepted (use a compressor only)",
                                  where=self.where)
        compressor = doc.get("compressor")
        self.codecs = [] if compressor is None else [_codec_v2(compressor, self.where)]
        self.fill = _fill(doc.get("fill_value"), self.where)
        separator = doc.get("dimension_separator", ".")
        if separator not in (".", "/"):
            raise SubmissionError(f"dimension_separator {separator!r}", where=self.where)
        self.separator, self.key_start = separator, ""

    def _v3(self, doc: dict[str, Any]) -> None:
        self.format = "zarr v3"
        if doc.get("zarr_format") != 3:
            raise SubmissionError("zarr_format must be 3 in zarr.json", where=self.where)
        self.declared_shape = _ints(doc.get("shape"), "shape", self.where)
        grid = doc.get("chunk_grid") or {}
        if grid.get("name") != "regular":
            raise SubmissionError("only a regular chunk grid is accepted", where=self.where)
        self.chunks = _ints((grid.get("configuration") or {}).get("chunk_shape"),
                            "chunk_shape", self.where)
        data_type = doc.get("data_type")
        if not isinstance(data_type, str) or not data_type.startswith(("uint", "int")):
            raise SubmissionError(f"data type {data_type!r} is not an integer type; labels are "
                                  f"{CLASS_NAMES} (uint8)", where=self.where)
        if doc.get("storage_transformers"):
            raise SubmissionError("storage transformers are not accepted", where=self.where)
        self.order = "C"
        self.codecs = []
        endian = "little"
        for codec in doc.get("codecs") or []:
            name = codec.get("name") if isinstance(codec, dict) else codec
            config = (codec.get("configuration") or {}) if isinstance(codec, dict) else {}
            if name == "bytes":
                endian = config.get("endian", "little")
            elif name == "sharding_indexed":
                raise SubmissionError("sharded zarr arrays are not accepted; write one without "
                                      "shards", where=self.where)
            elif name in ("zstd", "gzip", "blosc", "crc32c"):
                self.codecs.append(name)
            else:
                raise SubmissionError(f"codec {name!r} is not accepted (bytes with zstd, gzip, "
                                      "blosc or crc32c)", where=self.where)
        try:
            self.np_dtype = np.dtype(data_type).newbyteorder("<" if endian == "little"
                                                             else ">")
        except (TypeError, ValueError):
            raise SubmissionError(f"data type {data_type!r}", where=self.where) from None
        self.fill = _fill(doc.get("fill_value"), self.where)
        encoding = doc.get("chunk_key_encoding") or {"name": "default"}
        separator = (encoding.get("configuration") or {}).get(
            "separator", "/" if encoding.get("name") == "default" else ".")
        if separator not in (".", "/"):
            raise SubmissionError(f"chunk key separator {separator!r}", where=self.where)
        self.separator = separator
        if encoding.get("name") == "default":
            self.key_start = "c" + separator
        elif encoding.get("name") == "v2":
            self.key_start = ""
        else:
            raise SubmissionError(f"chunk key encoding {encoding.get('name')!r}",
                                  where=self.where)

    def slabs(self) -> Iterator[Slab]:
        cz, cy, cx = self.chunks
        z_n, y_n, x_n = self.shape
        expected = math.prod(self.chunks) * self.np_dtype.itemsize
        for iz in range(math.ceil(z_n / cz)):
            z0, z1 = iz * cz, min((iz + 1) * cz, z_n)
            row = np.empty((z1 - z0, y_n, x_n), np.uint8)
            for iy in range(math.ceil(y_n / cy)):
                y0, y1 = iy * cy, min((iy + 1) * cy, y_n)
                for ix in range(math.ceil(x_n / cx)):
                    x0, x1 = ix * cx, min((ix + 1) * cx, x_n)
                    key = self.prefix + self.key_start + self.separator.join(
                        str(i) for i in (iz, iy, ix))
                    member = self.members.get(key)
                    if member is None:
                        if self.fill is None:
                            raise SubmissionError("chunk missing (and no fill value)",
                                                  where=key)
                        row[:, y0:y1, x0:x1] = self.fill
                        continue
                    raw = self._decode(member, expected, key)
                    block = np.frombuffer(raw, self.np_dtype).reshape(self.chunks,
                                                                      order=self.order)
                    row[:, y0:y1, x0:x1] = as_labels(block[: z1 - z0, : y1 - y0, : x1 - x0],
                                                     key)
            yield Slab(z0, z1, row)

    def _decode(self, member: Member, expected: int, key: str) -> bytes | np.ndarray:
        # Refused from the listing, before a byte is read: a member declared at gigabytes
        # would otherwise be read whole before its decoded size could be checked.
        most = stored_bound(expected, compressed=bool(self.codecs))
        if member.size > most:
            raise SubmissionError(f"chunk of {member.size:,} bytes (as its archive entry "
                                  f"declares) where a chunk of {expected:,} bytes takes at "
                                  f"most {most:,}", where=key)
        data: bytes | np.ndarray = self.submission.read_member(member, most=most)
        for k in reversed(range(len(self.codecs))):
            data = _decode(self.codecs[k], bytes(data) if k else data,  # type: ignore[arg-type]
                           expected if k == 0 else None, key)
        if len(data) != expected:
            raise SubmissionError(f"chunk holds {len(data)} bytes where {expected} are "
                                  "expected (truncated or damaged)", where=key)
        return data


def stored_bound(expected: int, compressed: bool) -> int:
    """The most bytes a chunk of `expected` decoded bytes may take as stored: compressors
    grow incompressible data a little (zstd by 1/256 and a header; deflate and Blosc less)."""
    return expected + (expected // 64 if compressed else 0) + MAX_METADATA_BYTES


def _json_member(submission: SubmissionFile, member: Member) -> dict[str, Any]:
    if member.size > MAX_METADATA_BYTES:
        raise SubmissionError(f"metadata of {member.size} bytes is too large", where=member.name)
    try:
        doc = json.loads(submission.read_member(member, most=MAX_METADATA_BYTES))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise SubmissionError(f"not JSON ({e})", where=member.name) from None
    if not isinstance(doc, dict):
        raise SubmissionError("expected a JSON object", where=member.name)
    return doc


def _ints(value: Any, what: str, where: str) -> tuple[int, ...]:
    if not isinstance(value, list) or len(value) != 3 or \
            not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise SubmissionError(f"{what} must be three whole numbers (z, y, x), got {value!r}",
                              where=where)
    return tuple(value)


def _dtype(value: Any, where: str) -> np.dtype[Any]:
    try:
        dtype: np.dtype[Any] = np.dtype(value)
        return dtype
    except (TypeError, ValueError):
        raise SubmissionError(f"data type {value!r} not understood", where=where) from None


def _fill(value: Any, where: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value):
        raise SubmissionError(f"fill value {value!r} is not a label", where=where)
    return int(value)


def _codec_v2(compressor: Any, where: str) -> str:
    name = compressor.get("id") if isinstance(compressor, dict) else None
    if name in ("blosc", "zstd", "zlib", "gzip"):
        return str(name)
    raise SubmissionError(f"compressor {name!r} is not accepted (blosc, zstd, zlib, gzip or "
                          "none)", where=where)


def _decode(codec: str, data: bytes, expected: int | None, where: str) -> bytes | np.ndarray:
    """One codec undone, never producing more than `expected` bytes (when it is the last)."""
    limit = expected if expected is not None else MAX_CHUNK_BYTES
    try:
        if codec == "crc32c":
            return data[:-4]
        if codec == "blosc":
            import numcodecs

            if len(data) < 16:
                raise SubmissionError("blosc chunk shorter than its header", where=where)
            nbytes, _, cbytes = struct.unpack("<III", data[4:16])
            if nbytes > limit or cbytes != len(data):
                raise SubmissionError(f"blosc chunk declares {nbytes} bytes in {cbytes}, holds "
                                      f"{len(data)} (truncated or damaged)", where=where)
            out = np.empty(nbytes, np.uint8)
            numcodecs.Blosc().decode(data, out=out)
            return out
        if codec == "zstd":
            import numcodecs

            size = _zstd_content_size(data, where)
            if size > limit:
                raise SubmissionError(f"zstd chunk declares {size} bytes, over {limit}",
                                      where=where)
            out = np.empty(size, np.uint8)
            numcodecs.Zstd().decode(data, out=out)
            return out
        inflater = zlib.decompressobj(47)  # zlib or gzip header, detected
        result = inflater.decompress(data, limit + 1)
        if len(result) > limit or not inflater.eof:
            raise SubmissionError("compressed chunk is truncated or unpacks to more than a "
                                  "chunk", where=where)
        return result
    except (SubmissionError, MemoryError):
        raise
    except Exception as e:  # codecs raise RuntimeError, ValueError, zlib.error...
        raise SubmissionError(f"damaged {codec} chunk ({e})", where=where) from None


def _zstd_content_size(data: bytes, where: str) -> int:
    """The frame's declared content size (RFC 8878 frame header)."""
    if len(data) < 6 or data[:4] != b"\x28\xb5\x2f\xfd":
        raise SubmissionError("not a zstd frame", where=where)
    descriptor = data[4]
    fcs_flag, single = descriptor >> 6, (descriptor >> 5) & 1
    dict_size = (0, 1, 2, 4)[descriptor & 3]
    pos = 5 + (0 if single else 1) + dict_size
    size = (1 if single else 0, 2, 4, 8)[fcs_flag]
    if size == 0:
        raise SubmissionError("zstd chunk does not declare its size", where=where)
    if len(data) < pos + size:
        raise SubmissionError("zstd chunk shorter than its header", where=where)
    value = int.from_bytes(data[pos:pos + size], "little")
    return value + 256 if size == 2 else value


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
