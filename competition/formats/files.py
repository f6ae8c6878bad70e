"""A submission opened lazily by path: one file, a folder of files, or a zip of files.

Nothing is decoded before a task's limits are checked against what the file system or the
zip's directory declares: the size of the upload, the number of files, their uncompressed
sizes added up, and names that stay inside the folder or archive. Readers then take one
member at a time, so a task can read a large submission chunk by chunk.
"""

from __future__ import annotations

import io
import os
import stat
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import IO, BinaryIO, cast

from competition.errors import SubmissionError

MIB = 1024 * 1024
ZIP_MAGIC = b"PK\x03\x04"


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


class SubmissionFile:
    """One submission on disk; `name` is what error messages call it."""

    def __init__(self, path: Path | str, limits: Limits | None = None,
                 name: str | None = None):
        self.path = Path(path)
        self.limits = limits or Limits()
        self.name = name or str(path)

    @property
    def kind(self) -> str:
        """"folder", "zip" or "file"."""
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
        """The files of a folder or zip, checked against the limits before any is read."""
        if self.path.is_dir():
            return self._folder_members()
        check_size(self._stat().st_size, self.limits.max_bytes)
        if self.kind != "zip":
            return [Member(self.path.name, self._stat().st_size)]
        return self._zip_members()

    def _admit(self, members: list[Member], name: str, size: int) -> None:
        if len(members) >= self.limits.max_files:
            raise SubmissionError(f"more than {self.limits.max_files} files")
        members.append(Member(name, size))
        total = sum(m.size for m in members)
        if total > self.limits.max_unpacked_bytes:
            raise SubmissionError(f"its files unpack to over "
                                  f"{self.limits.max_unpacked_bytes / 1e6:.0f} MB")

    def _folder_members(self) -> list[Member]:
        members: list[Member] = []
        for path in sorted(self._walk(self.path)):
            info = path.lstat()
            rel = path.relative_to(self.path).as_posix()
            if stat.S_ISLNK(info.st_mode) or not stat.S_ISREG(info.st_mode):
                raise SubmissionError("not a regular file (links are not followed)", where=rel)
            self._admit(members, rel, info.st_size)
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

    def _zip_members(self) -> list[Member]:
        try:
            with zipfile.ZipFile(self.path) as archive:
                infos = archive.infolist()
        except (zipfile.BadZipFile, OSError, ValueError) as e:
            raise SubmissionError(f"not a readable zip archive ({e})") from None
        members: list[Member] = []
        for info in infos:
            if info.is_dir():
                continue
            safe_member_name(info.filename)
            if info.flag_bits & 0x1:
                raise SubmissionError("encrypted members are not accepted", where=info.filename)
            self._admit(members, info.filename, info.file_size)
        if not members:
            raise SubmissionError("the zip archive holds no files")
        return members

    def open_member(self, member: Member) -> BinaryIO:
        """One file's bytes as a stream that never yields more than its declared size."""
        if self.path.is_dir():
            return (self.path / member.name).open("rb")
        if self.kind != "zip":
            return self.path.open("rb")
        archive = zipfile.ZipFile(self.path)
        bounded = _Bounded(archive.open(member.name), member.size, member.name, archive)
        return cast(BinaryIO, bounded)  # a raw stream that reads like a BinaryIO

    def read_member(self, member: Member) -> bytes:
        with self.open_member(member) as f:
            return f.read()


def safe_member_name(name: str) -> str:
    """A member name that stays inside the archive (no absolute path, drive, or `..`)."""
    path = PurePosixPath(name.replace("\\", "/"))
    if not name or path.is_absolute() or ".." in path.parts or ":" in path.parts[0] or \
            "\x00" in name:
        raise SubmissionError("a path outside the archive is not accepted", where=repr(name))
    return path.as_posix()


class _Bounded(io.RawIOBase):
    """A member's stream, stopped where it would pass its declared size (a zip whose
    directory understates a member is a bomb, not a submission)."""

    def __init__(self, raw: IO[bytes], limit: int, name: str, owner: zipfile.ZipFile):
        self.raw, self.left, self.name, self.owner = raw, limit, name, owner

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def]
        try:
            chunk = self.raw.read(min(len(buffer), self.left + 1))
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as e:
            raise SubmissionError(f"damaged archive member ({e})", where=self.name) from None
        if len(chunk) > self.left:
            raise SubmissionError("unpacks to more than its archive entry declares",
                                  where=self.name)
        self.left -= len(chunk)
        buffer[: len(chunk)] = chunk
        return len(chunk)

    def close(self) -> None:
        try:
            self.raw.close()
            self.owner.close()
        finally:
            super().close()
