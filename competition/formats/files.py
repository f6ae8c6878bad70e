"""A submission opened lazily by path: one file, a folder of files, or a zip of files.

Nothing is decoded before a task's limits are checked against what the file system or the
zip's directory declares: the size of the upload, the number of files, their uncompressed
sizes added up, and names that stay inside the folder or archive. Readers then take one
member at a time, so a task can read a large submission chunk by chunk.

A zip's directory is read once per `SubmissionFile` and its archive kept open for every
member read after (reopening it per member parses the whole directory each time: quadratic
in members). Its entries are first counted from the raw directory, where zipfile will read
them, so that a directory of millions of entries is refused before zipfile builds an object
for each. A damaged archive, wherever it is found, is a SubmissionError saying so.
"""

from __future__ import annotations

import io
import lzma
import os
import stat
import struct
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import IO, BinaryIO, cast

from competition.errors import SubmissionError

MIB = 1024 * 1024
ZIP_MAGIC = b"PK\x03\x04"
ZIP_END = b"PK\x05\x06"  # end of central directory record (22 bytes and a comment)
ZIP64_LOCATOR = b"PK\x06\x07"  # 20 bytes, just before the end record
ZIP64_END = b"PK\x06\x06"  # 56 bytes, just before the locator
ZIP_ENTRY = b"PK\x01\x02"  # a central directory entry: 46 bytes, name, extra, comment
ZIP_METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflate",
               zipfile.ZIP_BZIP2: "bzip2", zipfile.ZIP_LZMA: "lzma"}
# What zipfile and its decompressors raise on a damaged archive. Never MemoryError: that is
# the scoring memory limit, reported as such.
ZIP_DAMAGE = (zipfile.BadZipFile, zlib.error, lzma.LZMAError, EOFError, OSError,
              NotImplementedError, RuntimeError, OverflowError, struct.error)


@dataclass(frozen=True)
class Limits:
    """What a task reads of one submission, at most."""

    max_bytes: int = 200 * MIB  # the upload as sent (a zip counts compressed)
    max_files: int = 1  # files in a folder or zip
    max_unpacked_bytes: int = 2048 * MIB  # those files' sizes added up

    def with_max_bytes(self, max_bytes: int) -> Limits:
        return replace(self, max_bytes=max_bytes)


@dataclass(frozen=True)
class Member:
    name: str  # relative, with "/" separators
    size: int  # uncompressed bytes


def check_size(n_bytes: int, max_bytes: int) -> None:
    if n_bytes == 0:
        raise SubmissionError("the file is empty")
    if n_bytes > max_bytes:
        raise SubmissionError(f"the file is {n_bytes / 1e6:.1f} MB, over the size limit of "
                              f"{max_bytes / 1e6:.1f} MB")


def reason(e: BaseException) -> str:
    """An exception's text for a participant: an OSError's without the server's path."""
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    return str(e) or type(e).__name__


class SubmissionFile:
    """One submission on disk; `name` is what error messages call it. A zip's archive stays
    open while this object lives (or until `close`)."""

    def __init__(self, path: Path | str, limits: Limits | None = None,
                 name: str | None = None):
        self.path = Path(path)
        self.limits = limits or Limits()
        self.name = name or str(path)
        self._archive: zipfile.ZipFile | None = None
        self._listing: list[Member] = []
        self._entries: dict[str, zipfile.ZipInfo] = {}

    def __enter__(self) -> SubmissionFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close a zip's archive (a later read lists it again)."""
        if self._archive is not None:
            self._archive.close()
        self._archive, self._listing, self._entries = None, [], {}

    @property
    def kind(self) -> str:
        """"folder", "zip" or "file"."""
        if self._archive is not None:
            return "zip"
        if self.path.is_dir():
            return "folder"
        try:
            with self.path.open("rb") as f:
                return "zip" if f.read(4) == ZIP_MAGIC else "file"
        except OSError:
            return "file"

    def _stat(self) -> os.stat_result:
        try:
            return self.path.stat()
        except OSError:
            raise SubmissionError("file not found") from None

    def size(self) -> int:
        """Bytes as uploaded (a folder: its files' sizes added up, within the limits)."""
        if self.path.is_dir():
            return sum(m.size for m in self.members())
        return self._stat().st_size

    def read_bytes(self) -> bytes:
        """The whole file, after its size is checked (single-file formats)."""
        info = self._stat()
        if stat.S_ISDIR(info.st_mode):
            raise SubmissionError("this is a folder; the task takes one file")
        check_size(info.st_size, self.limits.max_bytes)
        return self.path.read_bytes()

    def members(self) -> list[Member]:
        """The files of a folder or zip, checked against the limits before any is read (a
        zip's once: its listing is kept with its archive)."""
        if self._archive is not None:
            return list(self._listing)
        if self.path.is_dir():
            return self._folder_members()
        check_size(self._stat().st_size, self.limits.max_bytes)
        if self.kind != "zip":
            return [Member(self.path.name, self._stat().st_size)]
        return list(self._open_zip())

    def _admit(self, members: list[Member], member: Member, total: int) -> int:
        """`total` with `member` added, once both stay within the limits (a running total:
        adding the list up again for each member is quadratic in members)."""
        if len(members) >= self.limits.max_files:
            raise SubmissionError(f"more than {self.limits.max_files} files")
        total += member.size
        if total > self.limits.max_unpacked_bytes:
            raise SubmissionError(f"its files unpack to over "
                                  f"{self.limits.max_unpacked_bytes / 1e6:.0f} MB")
        members.append(member)
        return total

    def _folder_members(self) -> list[Member]:
        members: list[Member] = []
        total = 0
        for path in sorted(self._walk(self.path)):
            info = path.lstat()
            rel = path.relative_to(self.path).as_posix()
            if stat.S_ISLNK(info.st_mode) or not stat.S_ISREG(info.st_mode):
                raise SubmissionError("not a regular file (links are not followed)", where=rel)
            total = self._admit(members, Member(rel, info.st_size), total)
        if not members:
            raise SubmissionError("the folder holds no files")
        return members

    def _walk(self, folder: Path) -> Iterator[Path]:
        seen = 0
        for root, dirs, files in os.walk(folder, followlinks=False):
            dirs.sort()
            for name in sorted(files) + [d for d in dirs if Path(root, d).is_symlink()]:
                seen += 1
                if seen > self.limits.max_files:
                    raise SubmissionError(f"more than {self.limits.max_files} files")
                yield Path(root) / name

    def _open_zip(self) -> list[Member]:
        """List the zip within the limits and keep its archive open for the reads."""
        # Folders listed as entries of their own count too: room for one per file.
        most = 2 * self.limits.max_files
        try:
            with self.path.open("rb") as f:
                span = directory_span(f)
                if span is not None and count_entries(f, *span, most) > most:
                    raise SubmissionError(f"the zip's directory lists over {most:,} entries; "
                                          f"at most {self.limits.max_files:,} files are "
                                          "accepted")
            archive = zipfile.ZipFile(self.path)
        except (*ZIP_DAMAGE, ValueError) as e:  # ValueError: undecodable names, among others
            raise SubmissionError(f"not a readable zip archive ({reason(e)})") from None
        try:
            self._listing, self._entries = self._zip_members(archive.infolist())
        except BaseException:
            archive.close()
            raise
        self._archive = archive
        return self._listing

    def _zip_members(self, infos: list[zipfile.ZipInfo]
                     ) -> tuple[list[Member], dict[str, zipfile.ZipInfo]]:
        members: list[Member] = []
        entries: dict[str, zipfile.ZipInfo] = {}
        total = 0
        for info in infos:
            if info.is_dir():
                continue
            safe_member_name(info.filename)
            if info.flag_bits & 0x1:
                raise SubmissionError("encrypted members are not accepted", where=info.filename)
            if info.compress_type not in ZIP_METHODS:
                raise SubmissionError(f"compression method {info.compress_type} is not accepted "
                                      f"({', '.join(ZIP_METHODS.values())})", where=info.filename)
            if info.filename in entries:
                raise SubmissionError("listed twice in the zip's directory", where=info.filename)
            entries[info.filename] = info
            total = self._admit(members, Member(info.filename, info.file_size), total)
        if not members:
            raise SubmissionError("the zip archive holds no files")
        return members, entries

    def _entry(self, member: Member) -> tuple[zipfile.ZipFile, zipfile.ZipInfo]:
        if self._archive is None:
            self.members()  # listed (and checked) before any member is read
        assert self._archive is not None
        info = self._entries.get(member.name)
        if info is None:
            raise SubmissionError("not in the zip archive", where=member.name)
        return self._archive, info

    def _is_zip(self) -> bool:
        return self._archive is not None or (not self.path.is_dir() and self.kind == "zip")

    def open_member(self, member: Member) -> BinaryIO:
        """One file's bytes as a stream that never yields more than its declared size."""
        if self.path.is_dir():
            return (self.path / member.name).open("rb")
        if not self._is_zip():
            return self.path.open("rb")
        archive, info = self._entry(member)
        try:
            raw = archive.open(info)
        except ZIP_DAMAGE as e:
            raise SubmissionError(f"damaged archive member ({reason(e)})",
                                  where=member.name) from None
        return cast(BinaryIO, _Bounded(raw, member.size, member.name))  # reads as a BinaryIO

    def read_member(self, member: Member, most: int | None = None) -> bytes:
        """One file's bytes, exactly its declared size; with `most`, a file declared larger is
        refused before a byte is read (the caller's bound, not the archive's, sizes the
        read)."""
        if most is not None and member.size > most:
            raise SubmissionError(f"unpacks to {member.size:,} bytes, over the {most:,} such a "
                                  "file may hold", where=member.name)
        try:
            if self.path.is_dir() or not self._is_zip():
                with self.open_member(member) as f:
                    data = f.read(member.size + 1)
            else:
                archive, info = self._entry(member)
                # zipfile stops at the declared size and checks the CRC there
                with archive.open(info) as f:
                    data = f.read(member.size + 1)
        except SubmissionError:
            raise
        except ZIP_DAMAGE as e:
            raise SubmissionError(f"damaged file ({reason(e)})", where=member.name) from None
        if len(data) != member.size:
            raise SubmissionError(f"holds {len(data):,} bytes where {member.size:,} are "
                                  "declared", where=member.name)
        return data


def safe_member_name(name: str) -> str:
    """A member name that stays inside the archive (no absolute path, drive, or `..`)."""
    path = PurePosixPath(name.replace("\\", "/"))
    if not name or path.is_absolute() or ".." in path.parts or ":" in path.parts[0] or \
            "\x00" in name:
        raise SubmissionError("a path outside the archive is not accepted", where=repr(name))
    return path.as_posix()


def directory_span(f: IO[bytes]) -> tuple[int, int] | None:
    """Where zipfile will read a zip's central directory, (start, size), found as its
    `_EndRecData` finds it: the end record last in the file, or else the last one in the
    final 64 KiB (a comment may follow it), with a Zip64 record before it where one is. None
    where zipfile finds none (and so refuses the file itself)."""
    end = f.seek(0, os.SEEK_END)
    if end < 22:
        return None
    f.seek(end - 22)
    record = f.read(22)
    at = end - 22
    if record[:4] != ZIP_END or record[-2:] != b"\0\0":
        start = max(end - (1 << 16) - 22, 0)
        f.seek(start)
        tail = f.read()
        found = tail.rfind(ZIP_END)
        record, at = tail[found:found + 22], start + found
        if found < 0 or len(record) < 22:
            return None
    size = struct.unpack("<I", record[12:16])[0]
    before = 0  # the Zip64 record and its locator, between directory and end record
    if at >= 20:
        f.seek(at - 20)
        locator = f.read(20)
        if locator[:4] == ZIP64_LOCATOR and at >= 76:
            f.seek(at - 76)
            record64 = f.read(56)
            if record64[:4] == ZIP64_END:
                size, before = struct.unpack("<Q", record64[40:48])[0], 76
    start = at - before - size
    return (start, size) if start >= 0 else None


def count_entries(f: IO[bytes], start: int, size: int, most: int) -> int:
    """The central directory's entries at (start, size), counted as zipfile walks them (each
    46 bytes and its name, extra field and comment), but never beyond `most + 1`; a damaged
    entry ends the count (zipfile refuses the file there)."""
    f.seek(start)
    count = total = 0
    while total < size and count <= most:
        head = f.read(46)
        if len(head) < 46 or head[:4] != ZIP_ENTRY:
            break
        variable = sum(struct.unpack("<HHH", head[28:34]))
        f.seek(variable, os.SEEK_CUR)
        total += 46 + variable
        count += 1
    return count


class _Bounded(io.RawIOBase):
    """A member's stream, stopped where it would pass its declared size (a zip whose
    directory understates a member is a bomb, not a submission); damage is a
    SubmissionError naming the member."""

    def __init__(self, raw: IO[bytes], limit: int, name: str):
        self.raw, self.left, self.name = raw, limit, name

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def]
        try:
            chunk = self.raw.read(min(len(buffer), self.left + 1))
        except ZIP_DAMAGE as e:
            raise SubmissionError(f"damaged archive member ({reason(e)})",
                                  where=self.name) from None
        if len(chunk) > self.left:
            raise SubmissionError("unpacks to more than its archive entry declares",
                                  where=self.name)
        self.left -= len(chunk)
        buffer[: len(chunk)] = chunk
        return len(chunk)

    def close(self) -> None:
        try:
            self.raw.close()  # the archive stays open for the next member
        finally:
            super().close()
