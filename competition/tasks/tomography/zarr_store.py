"""A read-only zarr store over a submission (a zip or a folder), every read bounded.

zarr reads the array (metadata, codecs, checksums) through this store; the store decides how
many bytes each key may hold before it is read: a metadata file a few kilobytes, a chunk
what its `ChunkRule` allows (set only once the array's metadata has been checked, so no
chunk is read before). A chunk's bytes are then checked by the rule (a compressed frame that
declares more than a chunk is refused before zarr's codec allocates it). Which codecs run at
all is decided here too, from the metadata as written, before zarr builds them.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from zarr.abc.store import ByteRequest, Store
from zarr.core.buffer import Buffer, BufferPrototype

from competition.errors import SubmissionError
from competition.formats.files import Member, SubmissionFile

MAX_METADATA_BYTES = 64 * 1024
METADATA_NAMES = frozenset({"zarr.json", ".zarray", ".zattrs", ".zgroup", ".zmetadata"})
V2_COMPRESSORS = ("blosc", "zstd", "zlib", "gzip")  # numcodecs ids
V3_COMPRESSORS = ("blosc", "zstd", "gzip")


@dataclass(frozen=True)
class Codecs:
    """The bytes-to-bytes codecs a chunk is stored with: at most one compressor, and a crc32c
    checksum outside it (v3)."""

    compressor: str | None
    checksum: bool = False


class ChunkRule:
    """What a chunk stored with `codecs` may be: at most `most` bytes as stored, decoding to
    exactly `decoded` bytes as far as its header tells, and absent only where `fill` says."""

    def __init__(self, codecs: Codecs, decoded: int, fill: bool):
        self.codecs, self.decoded, self.fill = codecs, decoded, fill
        self.most = stored_bound(decoded, codecs.compressor is not None) + 4 * codecs.checksum

    def check(self, data: bytes, where: str) -> None:
        if self.codecs.checksum:  # zarr verifies it; the payload is what precedes it
            data = data[:-4]
        check_declared_size(self.codecs.compressor, data, self.decoded, where)


class SubmissionStore(Store):
    """The keys of one array: `prefix` (its folder in the submission, "" or ending in "/")
    followed by zarr's key."""

    supports_writes = False
    supports_deletes = False
    supports_listing = True

    def __init__(self, submission: SubmissionFile, members: dict[str, Member], prefix: str):
        super().__init__(read_only=True)
        self.submission, self.members, self.prefix = submission, members, prefix
        self.chunks: ChunkRule | None = None  # set once the metadata is checked

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SubmissionStore) and (other.submission, other.prefix) == (
            self.submission, self.prefix)

    def read(self, key: str) -> bytes | None:
        """A key's bytes within its bound, or None where the submission has none."""
        name = self.prefix + key
        member = self.members.get(name)
        if PurePosixPath(key).name in METADATA_NAMES:
            if member is None:
                return None
            if member.size > MAX_METADATA_BYTES:
                raise SubmissionError(f"metadata of {member.size:,} bytes is too large",
                                      where=name)
            return self.submission.read_member(member, most=MAX_METADATA_BYTES)
        rule = self.chunks
        if rule is None:  # a bug, not the participant's: the metadata is checked first
            raise RuntimeError(f"chunk {name} read before its array's metadata was checked")
        if member is None:
            if not rule.fill:
                raise SubmissionError("chunk missing (and no fill value)", where=name)
            return None
        # Refused from the listing, before a byte is read: a member declared at gigabytes
        # would otherwise be read whole before its decoded size could be checked.
        if member.size > rule.most:
            raise SubmissionError(f"chunk of {member.size:,} bytes (as its archive entry "
                                  f"declares) where a chunk of {rule.decoded:,} bytes takes at "
                                  f"most {rule.most:,}", where=name)
        data = self.submission.read_member(member, most=rule.most)
        rule.check(data, name)
        return data

    async def get(self, key: str, prototype: BufferPrototype,
                  byte_range: ByteRequest | None = None) -> Buffer | None:
        if byte_range is not None:  # only sharded arrays read ranges, and they are refused
            raise SubmissionError("partial reads are not supported", where=self.prefix + key)
        data = self.read(key)
        return None if data is None else prototype.buffer.from_bytes(data)

    async def get_partial_values(self, prototype: BufferPrototype,
                                 key_ranges: Iterable[tuple[str, ByteRequest | None]]
                                 ) -> list[Buffer | None]:
        return [await self.get(key, prototype, byte_range) for key, byte_range in key_ranges]

    async def exists(self, key: str) -> bool:
        return self.prefix + key in self.members

    async def set(self, key: str, value: Buffer) -> None:
        self._check_writable()

    async def delete(self, key: str) -> None:
        self._check_writable()

    async def list(self) -> AsyncIterator[str]:
        for name in self.members:
            if name.startswith(self.prefix):
                yield name[len(self.prefix):]

    async def list_prefix(self, prefix: str) -> AsyncIterator[str]:
        async for key in self.list():
            if key.startswith(prefix):
                yield key

    async def list_dir(self, prefix: str) -> AsyncIterator[str]:
        prefix = prefix.rstrip("/") + "/" if prefix.rstrip("/") else ""
        seen = set()
        async for key in self.list_prefix(prefix):
            child = key[len(prefix):].split("/")[0]
            if child not in seen:
                seen.add(child)
                yield child


# --- what the harness decides itself: the codecs it runs, and each chunk's size ---------------

def codecs_v2(doc: dict[str, Any], where: str) -> Codecs:
    if doc.get("filters"):
        raise SubmissionError("zarr filters are not accepted (use a compressor only)",
                              where=where)
    compressor = doc.get("compressor")
    if compressor is None:
        return Codecs(None)
    name = compressor.get("id") if isinstance(compressor, dict) else None
    if name not in V2_COMPRESSORS:
        raise SubmissionError(f"compressor {name!r} is not accepted (blosc, zstd, zlib, gzip "
                              "or none)", where=where)
    return Codecs(str(name))


def codecs_v3(doc: dict[str, Any], where: str) -> Codecs:
    """`bytes`, then at most one compressor, then at most a crc32c checksum."""
    if doc.get("storage_transformers"):
        raise SubmissionError("storage transformers are not accepted", where=where)
    codecs = doc.get("codecs")
    names = [c.get("name") if isinstance(c, dict) else c for c in
             (codecs if isinstance(codecs, list) else [codecs])]
    if "sharding_indexed" in names:
        raise SubmissionError("sharded zarr arrays are not accepted; write one without "
                              "shards", where=where)
    checksum = names[-1:] == ["crc32c"]
    middle = names[1:-1] if checksum else names[1:]
    if names[:1] != ["bytes"] or len(middle) > 1 or (middle and middle[0] not in
                                                      V3_COMPRESSORS):
        raise SubmissionError(f"codecs {names} are not accepted (bytes, then at most one of "
                              f"zstd, gzip or blosc, then at most crc32c)", where=where)
    return Codecs(str(middle[0]) if middle else None, checksum)


def check_declared_size(compressor: str | None, data: bytes, expected: int,
                         where: str) -> None:
    """A chunk's stored bytes decode to exactly `expected` bytes, as far as can be told
    before zarr's codec allocates its output: what a Blosc or zstd header declares, or a
    deflate stream inflated within the bound (its size is declared nowhere)."""
    if compressor is None:
        size = len(data)
    elif compressor == "blosc":
        if len(data) < 16:
            raise SubmissionError("blosc chunk shorter than its header", where=where)
        size, _, stored = struct.unpack("<III", data[4:16])
        if stored != len(data):
            raise SubmissionError(f"blosc chunk declares {size} bytes in {stored}, holds "
                                  f"{len(data)} (truncated or damaged)", where=where)
    elif compressor == "zstd":
        size = _zstd_content_size(data, where)
    else:
        inflater = zlib.decompressobj(47)  # a zlib or gzip header, detected
        try:
            size = len(inflater.decompress(data, expected + 1))
        except zlib.error as e:
            raise SubmissionError(f"damaged {compressor} chunk ({e})", where=where) from None
        if size > expected or not inflater.eof:
            raise SubmissionError("compressed chunk is truncated or unpacks to more than a "
                                  "chunk", where=where)
    if size != expected:
        what = f"{compressor} chunk declares" if compressor else "chunk holds"
        raise SubmissionError(f"{what} {size:,} bytes where {expected:,} are expected "
                              "(truncated or damaged)", where=where)


def stored_bound(expected: int, compressed: bool) -> int:
    """The most bytes a chunk of `expected` decoded bytes may take as stored: compressors
    grow incompressible data a little (zstd by 1/256 and a header; deflate and Blosc less)."""
    return expected + (expected // 64 if compressed else 0) + MAX_METADATA_BYTES


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
